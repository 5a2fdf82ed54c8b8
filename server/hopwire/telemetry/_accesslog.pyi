# the compiled default access-log line (_accesslog.c); the reference: accesslog.Writer.doc
from typing import Any

def json_line(ex: Any, logger: Any, offset: float) -> bytes: ...
def record(ex: Any, logger: Any, offset: float, observed_ns: int) -> tuple[bytes, bytes]: ...
def fields(down: Any) -> None: ...
def json_lines(pending: list[tuple[Any, Any]], offset: float) -> bytes: ...
def records(
    pending: list[tuple[Any, Any]], offset: float, observed_ns: int
) -> tuple[bytes, bytes]: ...

class Logger:
    writer: Any
    entrypoint: str
    router: str
    service: str
    log_names: bytes
    def __init__(
        self,
        writer: Any,
        entrypoint: str,
        router: str,
        service: str,
        pending: list[tuple[Any, Any]],
        batch: int,
    ) -> None: ...
    def start(self, ex: Any) -> None: ...
    def finish(self, ex: Any) -> None: ...
