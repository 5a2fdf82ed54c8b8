# the compiled encoder (_otlp.c); the reference and its documentation: otlp.py
from collections.abc import Callable, Sequence
from typing import Any

class Encoder:
    name: str
    pending: int
    def __init__(self, redact: Callable[[str], str]) -> None: ...
    def spans_of(self, record: Sequence[Any]) -> list[bytes]: ...
    def add(self, record: Sequence[Any]) -> int: ...
    def take(self, resource: bytes, scope: bytes) -> bytes: ...
    def drain(self) -> bytes: ...
    def extend(self, spans: bytes | memoryview, count: int) -> None: ...

def log_record(
    time_ns: int,
    severity_number: int,
    severity_text: str,
    body: str | bytes,
    attributes: dict[str, Any],
    trace_id: bytes | None,
    span_id: bytes | None,
    observed_ns: int,
) -> bytes: ...
