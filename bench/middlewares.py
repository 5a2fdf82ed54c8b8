"""make bench, middlewares part: what a route's middlewares cost, in CPU per request.

One nginx serves a 12-byte file; hopwire instances side by side, each driven by wrk in turn
over several interleaved rounds (CPU of every hopwire process per request):

    none          a router without middlewares (1 worker)
    headers+strip headers (two custom request fields + HSTS + nosniff) and stripPrefix (1 worker)
    none x2       a router without middlewares, 2 workers
    rateLimit x2  a rateLimit high enough never to refuse (the shared buckets are still
                  read and written on every request), 2 workers
    none 256K     a router without middlewares, a 256 KiB text file (1 worker)
    gzip/br/zstd 256K  compress, the client accepting that encoding (1 worker): reported as
                  MB of uncompressed body per CPU-second of hopwire

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

MIDDLEWARES = {  # chain, workers, path, Accept-Encoding
    "none": ("[]", 1, "/12B", ""),
    "headers+strip": ("[hdr, strip]", 1, "/api/12B", ""),
    "none x2": ("[]", 2, "/12B", ""),
    "rateLimit x2": ("[limit]", 2, "/12B", ""),
    "none 256K": ("[]", 1, "/text", ""),
    "gzip 256K": ("[gz]", 1, "/text", "gzip"),
    "br 256K": ("[gz]", 1, "/text", "br"),
    "zstd 256K": ("[gz]", 1, "/text", "zstd"),
}
TEXT = 256 * 1024
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
    gz: {{compress: {{}}}}
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
    words = [f"word{i * 7919 % 4093}" for i in range(TEXT)]  # text that compresses ~4:1
    (tmp / "www" / "text").write_bytes(" ".join(words).encode()[:TEXT])
    be = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_nginx(tmp, "backend", f"server {{ listen 127.0.0.1:{be}; root {tmp / 'www'}; }}")
        )
        targets: dict[str, tuple[int, int]] = {}
        for name, (chain, workers, _, _) in MIDDLEWARES.items():
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
        for name, (port, _) in targets.items():
            wrk(port, MIDDLEWARES[name][2], 1, 32)
        for rnd in range(args.rounds):
            for name, (port, pid) in targets.items():
                _, _, path, accept = MIDDLEWARES[name]
                pids = tree(pid)
                cpu0 = cpu_seconds(pids)
                headers = [f"Accept-Encoding: {accept}"] if accept else None
                conns = 8 if path == "/text" else 32
                rps, _, _, total = wrk(port, path, args.seconds, conns, headers)
                cpu = cpu_seconds(pids) - cpu0
                runs.setdefault(name, []).append(
                    (rps, cpu * 1e6 / max(total, 1), total * TEXT / 1e6 / max(cpu, 1e-9))
                )
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
            "| hopwire | req/s | CPU µs per request | body MB per CPU-second |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {n} | {m[0]:,.0f} | {m[1]:.2f} | "
                f"{f'{m[2]:,.0f}' if MIDDLEWARES[n][2] == '/text' else '—'} |"
                for n, m in med.items()
            ),
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
