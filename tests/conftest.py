from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Backend, Hopwire
from tests.otlp_receiver import GrpcReceiver


@pytest.fixture
def make_backend() -> Iterator[Any]:
    made: list[Backend] = []

    def make(name: str = "backend", tls: Any = None) -> Backend:
        b = Backend(name, tls)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def make_hopwire(tmp_path: Path) -> Iterator[Any]:
    made: list[Hopwire] = []

    def make(config: dict[str, Any], start: bool = True, **kw: Any) -> Hopwire:
        hw = Hopwire(tmp_path, config, **kw)
        made.append(hw)
        return hw.start() if start else hw

    yield make
    for hw in made:
        if hw.proc is not None:
            hw.stop()


@pytest.fixture
def receiver() -> Iterator[GrpcReceiver]:
    """A real OTLP gRPC receiver that decodes and keeps what arrives."""
    rx = GrpcReceiver()
    yield rx
    rx.close()
