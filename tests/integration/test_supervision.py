"""The master's supervisors: a stuck worker says where it is stuck before it is killed, and
workers and span exporters come back after their own, independent backoffs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
from typing import Any

from tests.harness import request, wait_for
from tests.integration.test_tracing import routes, tracing


def lines(hw: Any) -> list[dict[str, Any]]:
    found = []
    for line in hw.logs().splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


def test_a_stuck_worker_logs_its_stack_then_is_replaced(
    make_backend: Any, make_hopwire: Any
) -> None:
    """A rule whose regex backtracks for ever holds a worker's loop: the master asks it for
    its Python stack (the routing frame is in it, in the log), then kills and replaces it."""
    b = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "stuck": {"rule": "PathRegexp(`^/(a+)+$`)", "service": "s", "priority": 100},
                    "fine": {"rule": "PathPrefix(`/`)", "service": "s"},
                },
                "services": {"s": {"loadBalancer": {"servers": [{"url": b.url}]}}},
            },
            "heartbeatTimeout": "2s",
        },
        workers=1,
    )
    [worker] = hw.worker_pids()

    def hang() -> None:
        with socket.create_connection(("127.0.0.1", hw.port), timeout=30) as sock:
            sock.sendall(b"GET /" + b"a" * 40 + b"! HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                sock.recv(100)  # nothing: the worker dies with the request
            except OSError:
                pass

    threading.Thread(target=hang, daemon=True).start()
    wait_for(lambda: worker not in hw.worker_pids() and hw.worker_pids(), timeout=30)
    logs = hw.logs()
    asked = logs.index("asking for its Python stack")
    stack = logs.index("most recent call first", asked)
    killed = logs.index("killing it", stack)
    # the stack names the frames it was stuck in: the rule's matcher in routing.py
    assert re.search(r'File ".*hopwire/routing\.py", line \d+', logs[stack:killed]), logs[asked:]
    assert asked < stack < killed
    wait_for(lambda: request(hw.port, "GET", "/fine")[0] == 200, timeout=20)


def test_exporter_and_worker_backoffs_are_independent(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """Five exporter crashes in a row lengthen the exporter's restart delay; a worker that
    dies next still comes back after a first failure's delay."""
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)}, workers=1)
    for _ in range(5):
        [pid] = wait_for(hw.exporter_pids, timeout=30)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: [p for p in hw.exporter_pids() if p != pid], timeout=30)
    exporters = set(hw.exporter_pids())
    [worker] = [p for p in hw.worker_pids() if p not in exporters]
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: [p for p in hw.worker_pids() if p not in exporters and p != worker])
    delays: dict[str, list[float]] = {"exporter": [], "worker": []}
    for line in lines(hw):
        found = re.search(
            r"(worker|span exporter) .* died .* restarting (?:it )?in ([\d.]+)s", line["msg"]
        )
        if found:
            delays["exporter" if found[1] == "span exporter" else "worker"].append(float(found[2]))
    assert len(delays["exporter"]) == 5 and len(delays["worker"]) == 1, delays
    # 0.05 s doubled per failure, jittered down by up to half: the fifth exporter crash waits
    # 0.4-0.8 s; the worker's first failure 0.025-0.05 s, whatever the exporters did
    assert 0.4 <= delays["exporter"][-1] <= 0.8, delays
    assert 0.025 <= delays["worker"][0] <= 0.05, delays
    assert request(hw.port, "GET", "/")[0] == 200
