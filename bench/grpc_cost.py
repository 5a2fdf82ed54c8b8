"""make bench, gRPC part: what a gRPC unary call through hopwire costs, beside a 16 KiB
HTTP/1.1 request through the same worker.

One hopwire worker; behind it two gRPC backends on ``h2c://``: a grpcio server
(``bench/grpc_backend.py``, one unary method answering 12 bytes: the real thing, but it
answers ~4k calls/s on this machine, so hopwire wakes for nearly every answer), and nginx
answering the same gRPC message from a file with ``grpc-status: 0`` as a trailer (a backend
fast enough to load the worker as the HTTP/1.1 case does); and nginx serving a 16 KiB file
over HTTP/1.1.  The gRPC calls are driven by ``h2load -c 10 -m 10`` over h2c (POST,
``content-type: application/grpc``, one 12-byte message); the HTTP/1.1 requests by
``h2load --h1 -c 10``, to nginx and to ``bench/slow_backend.py`` (as slow as the grpcio
server: the same regime, for the grpcio row).  Interleaved rounds; reported: medians of
requests/s and of hopwire's CPU (master and worker) per request, and the gRPC/HTTP/1.1
ratios against the target (a gRPC call no dearer than the 16 KiB request).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, cpu_seconds, free_port, start_hopwire, start_nginx, stop, tree, wait_port

MESSAGE = b"hello world!"  # 12 bytes each way


def h2load(args: list[str], seconds: float) -> tuple[float, int]:
    """(req/s, requests succeeded) of one h2load run for ``seconds``."""
    out = subprocess.run(
        ["h2load", "-D", f"{seconds:g}", *args],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if rps is None or done is None or int(done.group(1)) == 0:
        raise SystemExit(f"h2load failed:\n{out[-2000:]}")
    return float(rps.group(1)), int(done.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "grpc.md"))
    args = ap.parse_args()
    for tool in ("h2load", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: run bench/install-deps.sh as root")
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-grpc-bench-"))
    tmp.chmod(0o755)
    docroot = tmp / "www"
    docroot.mkdir()
    (docroot / "16KiB").write_bytes(b"x" * 16 * 1024)
    body = tmp / "call.bin"
    body.write_bytes(b"\x00" + struct.pack(">I", len(MESSAGE)) + MESSAGE)
    (docroot / "bench.N").mkdir()
    (docroot / "bench.N" / "Echo").write_bytes(body.read_bytes())  # the answer, framed
    be, gb, ng, sb, hw, hw_int = (free_port() for _ in range(6))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_nginx(
                tmp,
                "backend",
                f"""
    server {{ listen 127.0.0.1:{be} backlog=4096; root {docroot}; }}
    server {{
        listen 127.0.0.1:{ng} http2 backlog=4096; root {docroot};
        location /bench.N/ {{
            default_type application/grpc; error_page 405 =200 $uri; add_trailer grpc-status 0;
        }}
    }}""",
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "grpc_backend.py"), "--port", str(gb)]
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "slow_backend.py"), "--port", str(sb)]
            )
        )
        (tmp / "hopwire.yml").write_text(f"""
workers: 1
entryPoints:
  web: {{address: "127.0.0.1:{hw}"}}
  internal: {{address: "127.0.0.1:{hw_int}"}}
http:
  routers:
    grpc: {{rule: "PathPrefix(`/bench.B/`)", service: grpc}}
    fast: {{rule: "PathPrefix(`/bench.N/`)", service: fast}}
    slow: {{rule: "PathPrefix(`/slow/`)", service: slow}}
    files: {{rule: "PathPrefix(`/`)", service: files}}
  services:
    grpc: {{loadBalancer: {{servers: [{{url: "h2c://127.0.0.1:{gb}"}}]}}}}
    fast: {{loadBalancer: {{servers: [{{url: "h2c://127.0.0.1:{ng}"}}]}}}}
    files: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be}"}}]}}}}
    slow: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{sb}"}}]}}}}
""")
        hopwire = start_hopwire(tmp / "hopwire.yml")
        procs.append(hopwire)
        for port in (be, gb, ng, sb, hw):
            wait_port(port)
        time.sleep(1.0)
        call = [
            "-c", "10", "-m", "10", "-d", str(body),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
        ]  # fmt: skip
        kinds = {
            "gRPC unary, grpcio backend": [*call, f"http://127.0.0.1:{hw}/bench.B/Echo"],
            "gRPC unary, fast h2c backend": [*call, f"http://127.0.0.1:{hw}/bench.N/Echo"],
            "HTTP/1.1 16 KiB": ["--h1", "-c", "10", f"http://127.0.0.1:{hw}/16KiB"],
            "HTTP/1.1 16 KiB, slow backend": ["--h1", "-c", "10", f"http://127.0.0.1:{hw}/slow/"],
        }
        for argv in kinds.values():  # warm up
            h2load(argv, 1)
        runs: dict[str, list[tuple[float, float]]] = {}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}", flush=True)
            for name, argv in kinds.items():
                pids = tree(hopwire.pid)
                cpu0 = cpu_seconds(pids)
                rps, total = h2load(argv, args.seconds)
                cpu = cpu_seconds(pids) - cpu0
                us = cpu / total * 1e6
                runs.setdefault(name, []).append((rps, us))
                print(f"{name:30} {rps:9.0f} req/s {us:7.1f} µs CPU per request", flush=True)
        med = {
            name: [statistics.median(c) for c in zip(*r, strict=True)] for name, r in runs.items()
        }
        http_us = med["HTTP/1.1 16 KiB"][1]
        lines = [
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; 1 hopwire worker; {args.rounds} interleaved "
            f"rounds of {args.seconds:g}s, medians. gRPC: h2load -c 10 -m 10 over h2c, 12-byte "
            "messages, to a grpcio server or to nginx answering the same message with its "
            "trailer (both h2c://); HTTP/1.1: h2load --h1 -c 10 to nginx serving 16 KiB, or "
            "to a Python backend spending 150 µs on each request (bench/slow_backend.py).",
            "",
            "| request | req/s | hopwire CPU per request |",
            "| --- | ---: | ---: |",
        ]
        for name, (rps, us) in med.items():
            lines.append(f"| {name} | {rps:,.0f} | {us:.1f} µs |")
        lines += ["", "| gRPC backend | gRPC call / 16 KiB HTTP/1.1 request, CPU | target |"]
        lines.append("| --- | ---: | --- |")
        for name in ("gRPC unary, grpcio backend", "gRPC unary, fast h2c backend"):
            ratio = med[name][1] / http_us
            verdict = "met" if ratio <= 1.0 else "missed"
            lines.append(f"| {name.partition(', ')[2]} | {ratio:.2f} | at most 1.00: {verdict} |")
        slow = med["gRPC unary, grpcio backend"][1] / med["HTTP/1.1 16 KiB, slow backend"][1]
        lines += [
            "",
            "In the same regime (each backend answering a few thousand requests a second, so "
            "that hopwire wakes for nearly every answer), a gRPC call behind grpcio costs "
            f"{slow:.2f}× a 16 KiB HTTP/1.1 request behind the slow HTTP/1.1 backend.",
        ]
        text = "\n".join(lines) + "\n"
        Path(args.out).write_text(text)
        print(text)
    finally:
        stop(procs, tmp)


if __name__ == "__main__":
    main()
