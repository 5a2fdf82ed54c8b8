"""Nothing handed between processes is lost uncounted (RELIABILITY 40): the spans of requests
answered just after start, just before a graceful stop and across a reload that changes the
exporters reach the OTLP receiver, end to end.  Each was intermittent, so each repeats."""

from __future__ import annotations

import json
import signal
import socket
import threading
from typing import Any

import pytest

from tests.harness import request, service, wait_for
from tests.otlp_receiver import attrs

ROUNDS = 4


def config(rx: Any, b: Any) -> dict[str, Any]:
    return {
        "http": {
            "routers": {"api": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service(b.url)},
        },
        "tracing": {
            "sampleRate": 1.0,
            "otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}},
            # long enough that only the shutdown flush can send the last spans in time
            "batch": {"scheduleDelay": "5s"},
        },
    }


def server_spans(rx: Any, tag: str) -> set[str]:
    return {
        attrs(s)["url.path"]
        for s in rx.spans()
        if s.kind == 2 and attrs(s).get("url.path", "").startswith(f"/{tag}/")
    }


def burst(port: int, tag: str, count: int) -> set[str]:
    """``count`` requests on parallel keep-alive connections, all answered 200."""
    paths = [f"/{tag}/{i}" for i in range(count)]
    answered: list[str] = []

    def client(mine: list[str]) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for path in mine:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(65536)
                assert head.startswith(b"HTTP/1.1 200"), head
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = head.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += sock.recv(65536)
                answered.append(path)

    threads = [threading.Thread(target=client, args=(paths[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answered) == sorted(paths)
    return set(paths)


@pytest.mark.parametrize(
    "tag,count,warm",
    [
        ("stop", 20, True),  # answered just before a graceful stop
        ("start", 70, False),  # answered right after the first 200 of /ping
    ],
)
def test_spans_of_requests_answered_at_start_up_and_before_a_stop_arrive(
    make_backend: Any, make_hopwire: Any, receiver: Any, tag: str, count: int, warm: bool
) -> None:
    b = make_backend()
    for r in range(ROUNDS):
        hw = make_hopwire(config(receiver, b), workers=2)  # returns at the first 200 of /ping
        if warm:
            assert request(hw.port, "GET", "/warm")[0] == 200
        sent = burst(hw.port, f"{tag}{r}", count)
        assert hw.stop() == 0
        got = server_spans(receiver, f"{tag}{r}")
        assert got == sent, f"round {r}: {len(got)} of {len(sent)} spans\n{hw.logs()[-3000:]}"


def test_spans_of_the_old_generation_arrive_across_a_reload(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """A reload that changes the tracing section starts new exporters and retires the old
    ones: the old workers' last spans must still reach an exporter."""
    b = make_backend()
    hw = make_hopwire(config(receiver, b), workers=2)
    for r in range(ROUNDS):
        sent = burst(hw.port, f"reload{r}", 20)
        cfg = hw.config
        cfg["tracing"]["serviceName"] = f"hopwire-{r}"  # a tracing change: new exporters
        hw.write(cfg)
        hw.signal(signal.SIGHUP)
        wait_for(lambda r=r: f"hopwire-{r}" in str(receiver.resources()) or _reloaded(hw, r + 1))
        wait_for(lambda tag=f"reload{r}", sent=sent: server_spans(receiver, tag) == sent, 15)
    assert hw.stop() == 0


def _reloaded(hw: Any, count: int) -> bool:
    return hw.logs().count("reloaded: generation") >= count


def test_spans_the_flush_deadline_leaves_unsent_are_counted(
    make_backend: Any, make_hopwire: Any
) -> None:
    """A collector that takes the connection and never answers: at the stop, the exporter's
    flush deadline (graceTimeOut here, 1 s) passes with the batch in flight; every span is
    accounted for, exported or counted dropped, in the exporter's last line."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepted by the kernel, never read, never answered
    try:
        b = make_backend()
        cfg = config(type("Rx", (), {"endpoint": f"127.0.0.1:{silent.getsockname()[1]}"}), b)
        cfg["tracing"]["batch"] = {"scheduleDelay": "100ms", "exportTimeout": "60s"}
        hw = make_hopwire(cfg, start=False, workers=2)
        hw.config["entryPoints"]["web"]["transport"] = {"lifeCycle": {"graceTimeOut": "1s"}}
        hw.write(hw.config)
        hw.start()
        for i in range(10):
            assert request(hw.port, "GET", f"/lost/{i}")[0] == 200
        assert hw.stop() == 0
        lines = [x for x in hw.logs().splitlines() if "span exporter 0 stopped" in x]
        assert lines, hw.logs()[-3000:]
        msg = json.loads(lines[-1])["msg"]
        exported = int(msg.split(" spans exported")[0].rsplit(" ", 1)[1])
        dropped = int(msg.split(" dropped")[0].rsplit(" ", 1)[1])
        assert (exported, dropped) == (0, 20), msg  # a SERVER and a CLIENT span per request
        assert "counted dropped" in hw.logs()
    finally:
        silent.close()
