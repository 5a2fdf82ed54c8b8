"""make bench, middlewares part: what a route's middlewares cost, in CPU per request.

One nginx serves a 12-byte file; hopwire instances side by side, each driven by wrk in turn
over several interleaved rounds (CPU of every hopwire process per request):

    none          a router without middlewares (1 worker)
    headers+strip headers (two custom request fields + HSTS + nosniff) and stripPrefix (1 worker)
    none x2       a router without middlewares, 2 workers
    rateLimit x2  a rateLimit high enough never to refuse (the shared buckets are still
                  read and written on every request), 2 workers

Targets: headers+strip at most +5% over none; rateLimit x2 at most +5% over none x2.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    ROOT,
    cpu_seconds,
    free_port,
    start_hopwire,
    start_nginx,
    stop,
    tree,
    wait_port,
    wrk,
)

MIDDLEWARES = {
    "none": ("[]", 1),
    "headers+strip": ("[hdr, strip]", 1),
    "none x2": ("[]", 2),
    "rateLimit x2": ("[limit]", 2),
}
TARGETS = [("headers+strip", "none", 5.0), ("rateLimit x2", "none x2", 5.0)]


def config(be: int, port: int, internal: int, chain: str, workers: int) -> str:
    return f"""
workers: {workers}
entryPoints:
  web: {{address: "127.0.0.1:{port}"}}
  internal: {{address: "127.0.0.1:{internal}"}}
http:
  middlewares:
    hdr:
      headers:
        customRequestHeaders: {{X-One: "1", X-Two: "2"}}
        stsSeconds: 31536000
        forceSTSHeader: true
        contentTypeNosniff: true
    strip: {{stripPrefix: {{prefixes: ["/api"]}}}}
    limit: {{rateLimit: {{average: 100000000, burst: 100000000}}}}
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be, middlewares: {chain}}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be}"}}]}}}}}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "middlewares.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-mw-bench-"))
    tmp.chmod(0o755)
    (tmp / "www" / "api").mkdir(parents=True)
    (tmp / "www" / "12B").write_bytes(b"x" * 12)
    be = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_nginx(tmp, "backend", f"server {{ listen 127.0.0.1:{be}; root {tmp / 'www'}; }}")
        )
        targets: dict[str, tuple[int, int]] = {}
        for name, (chain, workers) in MIDDLEWARES.items():
            port, internal = free_port(), free_port()
            path = tmp / f"{name.replace(' ', '-').replace('+', '-')}.yml"
            path.write_text(config(be, port, internal, chain, workers))
            proc = start_hopwire(path)
            procs.append(proc)
            targets[name] = (port, proc.pid)
        for port, _ in targets.values():
            wait_port(port)
        time.sleep(1.0)
        runs: dict[str, list[tuple[float, float]]] = {}
        for port, _ in targets.values():
            wrk(port, "/api/12B", 1, 32)
        for rnd in range(args.rounds):
            for name, (port, pid) in targets.items():
                path = "/api/12B" if "strip" in name else "/12B"
                pids = tree(pid)
                cpu0 = cpu_seconds(pids)
                rps, _, _, total = wrk(port, path, args.seconds, 32)
                cpu = cpu_seconds(pids) - cpu0
                runs.setdefault(name, []).append((rps, cpu * 1e6 / max(total, 1)))
                print(
                    f"round {rnd + 1} {name:14} {rps:9.0f} req/s {cpu * 1e6 / max(total, 1):6.2f} µs CPU/req",
                    flush=True,
                )
        med = {n: [statistics.median(c) for c in zip(*r, strict=True)] for n, r in runs.items()}
        lines = [
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; wrk -t1 -c32, {args.rounds} interleaved rounds "
            f"of {args.seconds:g}s, medians; 12-byte bodies from nginx.",
            "",
            "| hopwire | req/s | CPU µs per request |",
            "| --- | ---: | ---: |",
            *(f"| {n} | {m[0]:,.0f} | {m[1]:.2f} |" for n, m in med.items()),
            "",
            "| setting | vs | CPU per request | target |",
            "| --- | --- | ---: | --- |",
        ]
        for name, base, most in TARGETS:
            change = (med[name][1] / med[base][1] - 1) * 100
            verdict = "met" if change <= most else "missed"
            lines.append(f"| {name} | {base} | {change:+.1f}% | ≤ +{most:g}% {verdict} |")
        table = "\n".join(lines)
        print("\n" + table)
        Path(args.out).write_text(table + "\n")
    finally:
        stop(procs, tmp)


if __name__ == "__main__":
    main()
