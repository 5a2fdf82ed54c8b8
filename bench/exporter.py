"""make bench, exporter part: spans per second the span exporter turns into OTLP/gRPC exports.

The real exporter process (``run_exporter``, forked as the master forks it) receives realistic
spans (a SERVER and a CLIENT span per request) from a feeder that sends datagrams as the
workers write them (a span count, then the spans as encoded by the worker's encoder) as fast as
the socket takes them, and exports them to a real OTLP/gRPC receiver
(bench/otlp_sink.py).  Measured: spans exported per wall second and per CPU-second of the
exporter processes, for each encoder (c, python: the exporter's, which checks and wraps) and
for 1 and 2 exporters (datagrams spread over their sockets as workers spread them).  The receiver and the feeder share the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, cpu_seconds, free_port, wait_port

BATCH = 128  # requests per datagram: 256 spans, as SpanSink sends them (BATCH_SPANS)
RUNS = itertools.count()


def record(rng: random.Random, i: int) -> tuple[Any, ...]:
    """A SpanRecord with one attempt, as a 12-byte GET through one router makes it."""
    start = 1_764_579_600_000_000_000 + i * 1000
    attempt = [rng.randbytes(8), start + 10_000, start + 80_000, "http://127.0.0.1:9000"]
    attempt += ["127.0.0.1", 9000, 200, ""]
    return (
        rng.randbytes(16),
        rng.randbytes(8),
        b"",
        False,
        3,
        b"",
        "GET",
        "all",
        "/12B",
        "",
        "127.0.0.1",
        8080,
        "127.0.0.1",
        40000 + i % 20000,
        "1.1",
        "wrk/4.2",
        200,
        "",
        start,
        start + 90_000,
        False,
        [attempt],
        (),
        (),
        "http",
    )


def exporter_cmd(path: str, index: int, endpoint: str, encoder: str, log: Path) -> list[str]:
    code = f"""
import sys
from hopwire.checks import load
from hopwire.telemetry.exporter import run_exporter
cfg = load(None, [
    "--tracing.otlp.grpc.endpoint={endpoint}", "--tracing.otlp.grpc.insecure=true",
    "--tracing.encoder={encoder}", "--tracing.batch.maxQueueSize=65536",
    "--tracing.batch.scheduleDelay=100ms", "--log.filePath={log}",
], {{}})
sys.exit(run_exporter(cfg.tracing, cfg.log, {path!r}, "bench", {index}, 10.0))
"""
    return [sys.executable, "-c", code]


def run_once(
    encoder: str, count: int, seconds: float, sink_port: int, tmp: Path
) -> dict[str, float]:
    from hopwire.telemetry import otlp
    from hopwire.telemetry.records import HEADER

    rng = random.Random(1)
    worker = otlp.encoder("c")
    datagrams = []
    for i in range(200):
        for j in range(BATCH):
            worker.add(record(rng, i * BATCH + j))
        datagrams.append(HEADER.pack(worker.pending) + worker.drain())
    run = next(RUNS)  # fresh files per run: an exporter appends to its log
    paths = [str(tmp / f"x{run}-{encoder}-{count}-{i}.sock") for i in range(count)]
    logs = [tmp / f"x{run}-{encoder}-{count}-{i}.log" for i in range(count)]
    procs = [
        subprocess.Popen(exporter_cmd(p, i, f"127.0.0.1:{sink_port}", encoder, log), cwd=ROOT)
        for i, (p, log) in enumerate(zip(paths, logs, strict=True))
    ]
    deadline = time.monotonic() + 20
    while not all(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit("exporter did not start")
        time.sleep(0.05)
    time.sleep(0.5)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    cpu0 = cpu_seconds([p.pid for p in procs])
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        for _ in range(50):  # blocking sends: the feeder waits when an exporter is behind
            sock.sendto(datagrams[n % len(datagrams)], paths[n % count])
            n += 1
    sock.close()
    cpu = 0.0
    for p in procs:  # SIGTERM: each sends what it holds, then exits; its rusage is the total
        p.send_signal(signal.SIGTERM)
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    wall = time.monotonic() - t0
    exported = dropped = 0
    for log in logs:
        for line in log.read_text().splitlines():
            msg = json.loads(line)["msg"]
            if " stopped: " in msg:
                words = msg.split(": ", 1)[1].split()
                exported += int(words[0])
                dropped += int(words[3])
    return {
        "sent": n * BATCH * 2,
        "exported": exported,
        "dropped": dropped,
        "wall": wall,
        "cpu": cpu - cpu0,
        "startup_cpu": cpu0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "exporter.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-bench-exporter-"))
    sink_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), "--port", str(sink_port)],
        stdout=subprocess.PIPE,
    )
    wait_port(sink_port)
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for rnd in range(args.rounds):
            for encoder in ("c", "python"):
                for count in (1, 2):
                    r = run_once(encoder, count, args.seconds, sink_port, tmp)
                    runs.setdefault((encoder, count), []).append(r)
                    print(
                        f"round {rnd + 1} {encoder:6} x{count}: {r['exported'] / r['wall']:9,.0f}"
                        f" spans/s, {r['exported'] / r['cpu']:9,.0f} spans/CPU-s,"
                        f" {r['dropped']} dropped",
                        flush=True,
                    )
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; the real exporter process(es) fed the datagrams "
        f"workers send ({BATCH} requests, a SERVER + a CLIENT span each, encoded in the worker) for {args.seconds:g}s, "
        f"exporting to a local OTLP/gRPC receiver; {args.rounds} interleaved rounds, medians. "
        "Feeder and receiver share the 2 cores with the exporters.",
        "",
        "| encoder | exporters | spans/s (wall) | spans per exporter CPU-s | µs CPU per span | dropped |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (encoder, count), rs in runs.items():
        wall = statistics.median(r["exported"] / r["wall"] for r in rs)
        per_cpu = statistics.median(r["exported"] / r["cpu"] for r in rs)
        dropped = sum(r["dropped"] for r in rs)
        lines.append(
            f"| {encoder} | {count} | {wall:,.0f} | {per_cpu:,.0f} | {1e6 / per_cpu:.2f} | {dropped} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
