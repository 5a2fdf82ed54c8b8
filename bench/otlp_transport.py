"""CPU of one OTLP export, per transport: the exporter's own ``GrpcTransport`` and
``HttpTransport`` (http.client), and the ``requests`` session the official OTLP/HTTP exporter
posts with (hopwire's HTTP transport until 2026-12-08), against bench/otlp_sink.py.

An export of the access log holds up to 512 records (OTEL_BLRP_MAX_EXPORT_BATCH_SIZE) of
~1 KB each: the fixed cost of a call is paid once per 512 records.  CPU is this process's
(getrusage, every thread), the sink's is not counted; the transports take turns, rounds
interleaved, medians reported.

    python bench/otlp_transport.py [--rounds 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import free_port, wait_port  # noqa: E402

SIZES = {"1 KB": 1_000, "512 KB": 512_000}


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class RequestsPost:
    """The previous HTTP transport's call: a requests.Session post."""

    def __init__(self, endpoint: str):
        import requests

        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/x-protobuf"
        self.endpoint = endpoint

    def send(self, body: bytes, deadline: float) -> tuple[bool, bool, str]:
        resp = self.session.post(self.endpoint, data=body, timeout=10)
        return resp.status_code == 200, False, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "otlp-transport.md"))
    args = ap.parse_args()
    from hopwire.telemetry.exporter import SIGNALS, GrpcTransport, HttpTransport

    port, http_port = free_port(), free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "otlp_sink.py"),
            "--port",
            str(port),
            "--http-port",
            str(http_port),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        wait_port(http_port)
        common = {"headers": {}, "tls": None, "compression": "none", "timeout": 10.0}
        url = f"http://127.0.0.1:{http_port}/v1/logs"
        transports: dict[str, Any] = {
            "gRPC (grpcio)": GrpcTransport(
                SimpleNamespace(endpoint=f"127.0.0.1:{port}", insecure=True, **common),
                SIGNALS["logs"],
            ),
            "HTTP (http.client)": HttpTransport(SimpleNamespace(endpoint=url, **common)),
            "HTTP (requests)": RequestsPost(url),
        }
        runs: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for size_name, size in SIZES.items():
                body = os.urandom(size)
                for name, transport in transports.items():
                    assert transport.send(body, time.monotonic() + 10)[0]
                    before = cpu()
                    for _ in range(args.calls):
                        transport.send(body, time.monotonic() + 10)
                    used = (cpu() - before) / args.calls
                    runs.setdefault((name, size_name), []).append(used * 1e6)
    finally:
        sink.terminate()
        sink.wait()
    lines = [
        "# OTLP transports: CPU of one export",
        "",
        f"`python bench/otlp_transport.py --rounds {args.rounds} --calls {args.calls}`, measured"
        f" {time.strftime('%Y-%m-%d')} on {platform.node()} ({os.cpu_count()} cores, Python"
        f" {platform.python_version()}). CPU of this process (getrusage, every thread) per"
        " export to bench/otlp_sink.py on 127.0.0.1; the sink's CPU is not counted; medians.",
        "",
        "| transport | "
        + " | ".join(f"CPU per call, {s}" for s in SIZES)
        + " | per record (512 KB) |",
        "| --- |" + " ---: |" * (len(SIZES) + 1),
    ]
    for name in transports:
        cells = [statistics.median(runs[(name, s)]) for s in SIZES]
        per_record = cells[-1] / 512
        lines.append(
            f"| {name} | " + " | ".join(f"{c:,.0f} µs" for c in cells) + f" | {per_record:.2f} µs |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
