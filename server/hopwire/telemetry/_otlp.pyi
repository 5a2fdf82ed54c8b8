# the compiled encoder (_otlp.c); the reference and its documentation: otlp.py
from collections.abc import Callable, Sequence
from typing import Any

class Encoder:
    name: str
    def __init__(self, redact: Callable[[str], str]) -> None: ...
    def spans_of(self, record: Sequence[Any]) -> list[bytes]: ...
