"""Slow clients by the hundred (RELIABILITY 41): slowhttptest's slow read, slowloris and slow
body against hopwire and nginx, side by side, each proxying the same nginx backend (1 MiB and
small responses).

For each proxy and attack: worker RSS before, at its peak and after the attackers left (the
largest worker), the backend connections the proxy held at the peak, and the latency of a probe
client (one small GET on a fresh connection every 50 ms) during the attack: p50, p99, max and
failures.  Prints a table and writes bench/results/slowclients.md.

    .venv/bin/python bench/slowclients.py [--connections 400] [--rate 100] [--seconds 30]

The issue's targets (issue 21): 400 slow readers -> worker RSS growth <= 64 MiB and within
16 MiB of the start after they leave; the probe's p99 <= 100 ms during each attack; no worker
restart, no ERROR line.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, free_port, nginx_proxy, rss_mib, start_nginx, stop, tree, wait_port

ATTACKS = {
    # slow read: a tiny receive window, 32 bytes read every 5 s, 1 MiB responses
    "slow read": ["-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3"],
    # slowloris: a request head that never ends, a field every 10 s
    "slowloris": ["-H", "-i", "10", "-s", "8192"],
    # slow body: a POST whose body trickles in, a few bytes every 10 s
    "slow body": ["-B", "-i", "10", "-s", "8192"],
}
BIG = 1 << 20


class Probe(threading.Thread):
    """A small GET on a fresh connection every 50 ms; latencies in ms, failures counted."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self.last = ""  # the last failure, for the report
        self.done = threading.Event()

    def run(self) -> None:
        import socket

        while not self.done.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(b"GET /small HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
                    out = b""
                    while chunk := sock.recv(65536):
                        out += chunk
                if not out.startswith(b"HTTP/1.1 200"):
                    self.failures += 1
                    self.last = repr(out[:100])
                else:
                    self.latencies.append((time.monotonic() - t0) * 1000)
            except OSError as exc:
                self.failures += 1
                self.last = repr(exc)
            time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))


def backend_connections(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    return len(out.splitlines())


def workers_of(kind: str, master: subprocess.Popen[bytes]) -> list[int]:
    pids = tree(master.pid)[1:]
    if kind != "hopwire":
        return pids
    # hopwire's children: the workers (the span exporter only runs with tracing)
    return pids


def attack(
    kind: str,
    master: subprocess.Popen[bytes],
    port: int,
    be_port: int,
    name: str,
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, Any]:
    pids = workers_of(kind, master)
    time.sleep(1)
    before = max(rss_mib(pids))
    path = "/big" if name == "slow read" else "/small"
    cmd = [
        "slowhttptest",
        *ATTACKS[name],
        "-c",
        str(args.connections),
        "-r",
        str(args.rate),
        "-l",
        str(args.seconds),
        "-u",
        f"http://127.0.0.1:{port}{path}",
        "-p",
        "5",
        "-o",
        str(tmp / f"{kind}-{name}"),
    ]
    if name == "slow body":
        cmd += ["-t", "POST"]
    probe = Probe(port)
    peak = before
    held = 0
    attacker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    probe.start()
    while attacker.poll() is None:
        try:
            peak = max(peak, max(rss_mib(pids)))
        except (FileNotFoundError, ValueError):
            pass
        held = max(held, backend_connections(be_port))
        time.sleep(0.5)
    probe.done.set()
    probe.join()
    time.sleep(args.settle)
    alive = all(os.path.exists(f"/proc/{p}") for p in pids)
    after = max(rss_mib(pids)) if alive else float("nan")
    lat = sorted(probe.latencies) or [float("nan")]
    return {
        "proxy": kind,
        "attack": name,
        "rss_before": before,
        "rss_peak": peak,
        "rss_after": after,
        "backend_conns": held,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1],
        "probes": len(probe.latencies),
        "failures": probe.failures,
        "workers_kept": alive,
        "last_failure": probe.last,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=400)
    ap.add_argument("--rate", type=int, default=100, help="new attacker connections per second")
    ap.add_argument("--seconds", type=int, default=30, help="length of each attack")
    ap.add_argument("--settle", type=float, default=5.0, help="wait after it before RSS")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated attacks (default: all)")
    ap.add_argument("--proxies", default="hopwire,nginx")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "slowclients.md"))
    args = ap.parse_args()
    if not shutil.which("slowhttptest"):
        raise SystemExit("slowhttptest is not installed: bash bench/install-deps.sh (as root)")
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-slow-"))
    tmp.chmod(0o755)  # nginx's workers (not root) read the files below
    (tmp / "www").mkdir()
    (tmp / "www" / "big").write_bytes(b"b" * BIG)
    (tmp / "www" / "small").write_bytes(b"ok\n")
    be_port, inner = free_port(), free_port()
    # POST /small is read whole by the backend before it answers (nginx buffers a request
    # body before proxying it on), so that a slow body is held open through the proxy
    backend = start_nginx(
        tmp,
        "backend",
        f"""server {{ listen 127.0.0.1:{be_port} backlog=4096; root {tmp}/www;
              keepalive_requests 1000000; client_body_timeout 120s;
              location / {{ if ($request_method = POST) {{ proxy_pass http://127.0.0.1:{inner}; }} }} }}
            server {{ listen 127.0.0.1:{inner}; location / {{ return 200 "ok\\n"; }} }}""",
        2,
    )
    wait_port(be_port)
    names = [n for n in ATTACKS if not args.only or n in args.only.split(",")]
    rows: list[dict[str, Any]] = []
    try:
        for kind in args.proxies.split(","):
            for name in names:  # a fresh proxy for each attack: RSS from its own start
                port = free_port()
                if kind == "hopwire":
                    cfg = tmp / "hopwire.yml"
                    cfg.write_text(
                        f"""workers: {args.workers}
log: {{level: WARN, filePath: {tmp}/hopwire.log}}
entryPoints:
  web: {{address: "127.0.0.1:{port}"}}
  internal: {{address: "127.0.0.1:{free_port()}"}}
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be_port}"}}]}}}}}}
"""
                    )
                    master = subprocess.Popen(
                        [sys.executable, "-m", "hopwire", "--config", str(cfg)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        cwd=ROOT,
                    )
                else:
                    master = start_nginx(
                        tmp,
                        f"proxy-{port}",
                        nginx_proxy(f"127.0.0.1:{port}", be_port),
                        args.workers,
                    )
                wait_port(port)
                time.sleep(1)
                try:
                    row = attack(kind, master, port, be_port, name, args, tmp)
                finally:
                    master.terminate()
                    try:
                        master.wait(20)
                    except subprocess.TimeoutExpired:
                        master.kill()
                        master.wait()
                rows.append(row)
                print(fmt(row), row["last_failure"], flush=True)
        errors = 0
        log = tmp / "hopwire.log"
        if log.exists():
            errors = log.read_text().count('"level":"ERROR"')
        report(rows, args, errors)
    finally:
        stop([backend], tmp)


def fmt(r: dict[str, Any]) -> str:
    return (
        f"| {r['proxy']} | {r['attack']} | {r['rss_before']:.1f} | {r['rss_peak']:.1f} "
        f"(+{r['rss_peak'] - r['rss_before']:.1f}) | {r['rss_after']:.1f} "
        f"(+{r['rss_after'] - r['rss_before']:.1f}) | {r['backend_conns']} | {r['p50']:.1f} | "
        f"{r['p99']:.1f} | {r['max']:.1f} | {r['probes']}/{r['failures']} |"
    )


def report(rows: list[dict[str, Any]], args: argparse.Namespace, errors: int) -> None:
    head = (
        "| proxy | attack | worker RSS before (MiB) | peak | after | backend conns at peak "
        "| probe p50 (ms) | p99 | max | probes ok/failed |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = [fmt(r) for r in rows]
    verdicts = []
    for r in rows:
        if r["proxy"] != "hopwire":
            continue
        growth = r["rss_peak"] - r["rss_before"]
        back = r["rss_after"] - r["rss_before"]
        if r["attack"] == "slow read":
            verdicts.append(
                f"- slow read: RSS growth {growth:.1f} MiB (target <= 64): "
                f"{'met' if growth <= 64 else 'missed'}; after {back:+.1f} MiB (target <= 16): "
                f"{'met' if back <= 16 else 'missed'}"
            )
        verdicts.append(
            f"- {r['attack']}: probe p99 {r['p99']:.1f} ms (target <= 100): "
            f"{'met' if r['p99'] <= 100 else 'missed'}; workers kept: {r['workers_kept']}"
        )
    verdicts.append(f"- ERROR lines in hopwire's log: {errors}")
    text = (
        f"# Slow clients, {datetime.date.today()} ({platform.node()}, {os.cpu_count()} cores)\n\n"
        f"{args.connections} connections at {args.rate}/s for {args.seconds} s per attack, "
        f"{args.workers} workers per proxy, slowhttptest {' / '.join(ATTACKS)}; the largest "
        f"worker's RSS; RSS after: {args.settle:g} s after the attack ended.\n\n"
        + head
        + "\n".join(lines)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
