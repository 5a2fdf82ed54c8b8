# the compiled metrics observer (_meter.c); the reference: metrics.PyMeter
from typing import Any

class Meter:
    tables: list[Any]
    bounds: tuple[float, ...]
    route: str
    scheme: str
    rich: bool
    nbuckets: int
    def __init__(
        self,
        tables: list[Any],
        bounds: tuple[float, ...],
        rich: bool = False,
        route: str = "",
        scheme: str = "http",
    ) -> None: ...
    def start(self, ex: Any) -> None: ...
    def finish(self, ex: Any) -> None: ...
    def take(self) -> dict[tuple[Any, ...], list[Any]]: ...
    def snapshot(self) -> dict[tuple[Any, ...], list[Any]]: ...
