"""The master's reload rollback (``Arbiter.roll_back``), which no configuration can reach from
outside once it has been validated (a new generation's worker or span exporter that does not
start): the running configuration, its listeners, exporters and shared state come back, the
new listeners are closed, the new exporters signalled, and the failure counted."""

from __future__ import annotations

import signal
import socket
import tempfile
from typing import Any

from hopwire import arbiter
from hopwire.checks import load
from hopwire.telemetry import metrics


def reload_failures() -> float:
    family = metrics.family("reload_failures")
    return sum(s.value for m in family.collect() for s in m.samples if s.name.endswith("_total"))


def listener(address: str) -> arbiter.Listener:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return arbiter.Listener(address, False, sock)


def test_roll_back_puts_the_running_configuration_back(monkeypatch: Any) -> None:
    if not metrics.enabled():
        metrics.init(tempfile.mkdtemp(prefix="hopwire-arbiter-"), metrics.default_buckets())
    config = load(None, ["--entryPoints.web.address=127.0.0.1:8001"], {})
    new_config = load(None, ["--entryPoints.web.address=127.0.0.1:8002"], {})
    master = arbiter.Arbiter(config, arbiter.Source(None, []))
    signalled: list[tuple[int, int]] = []
    monkeypatch.setattr(master, "signal", lambda pid, sig: signalled.append((pid, sig)))
    kept, extra = listener("127.0.0.1:0"), listener("127.0.0.1:1")
    running = arbiter.Running({"web": kept}, config, None, {"old": 1}, {101: 0}, ["/old.sock"])
    # the reload had switched to the new generation's state
    master.listeners = {"web": kept, "extra": extra}
    master.config, master.shared = new_config, {"new": 2}
    master.exporters, master.span_paths = {202: 0}, ["/new.sock"]
    failures = reload_failures()
    assert master.roll_back(running, signal.SIGKILL) is False
    assert master.config is config and master.listeners == {"web": kept}
    assert master.shared == {"old": 1}
    assert master.exporters == {101: 0} and master.span_paths == ["/old.sock"]
    assert signalled == [(202, signal.SIGKILL)] and 202 in master.retired_exporters
    assert extra.sock.fileno() == -1 and kept.sock.fileno() != -1  # only the new one closed
    assert reload_failures() == failures + 1
    kept.sock.close()


def test_roll_back_without_new_exporters_leaves_them(monkeypatch: Any) -> None:
    if not metrics.enabled():
        metrics.init(tempfile.mkdtemp(prefix="hopwire-arbiter-"), metrics.default_buckets())
    config = load(None, [], {})
    master = arbiter.Arbiter(config, arbiter.Source(None, []))
    monkeypatch.setattr(master, "signal", lambda pid, sig: (_ for _ in ()).throw(AssertionError))
    master.exporters = {303: 0}
    running = arbiter.Running({}, config, None, {}, {303: 0}, [])
    master.roll_back(running, None)
    assert master.exporters == {303: 0}
