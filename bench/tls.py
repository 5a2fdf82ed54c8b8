"""make bench, TLS part: HTTPS through hopwire, nginx and Traefik, side by side, interleaved.

The same certificate (ECDSA P-256, made by hopwire's own ``tls.self_signed``) and the same protocol and
cipher (TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256: wrk speaks 1.2) for all three proxies, 1
worker / 1 core each (Traefik with GOMAXPROCS=1), in front of one nginx serving static files
over plain HTTP.  Modes, each driven by wrk over several interleaved rounds:

    keep-alive  wrk -c32 on HTTPS keep-alive connections, 12 B and 16 KiB bodies
    handshake   wrk with Connection: close: one TLS handshake per request (12 B bodies);
                wrk keeps its session for the reconnect, so resumption is what is measured
                where the server resumes (all three do by default)
    plain       hopwire's plain entrypoint beside its TLS one, and a hopwire without any TLS
                entrypoint: plain HTTP must cost the same with TLS configured elsewhere

Reported per mode: median requests/s, p99, requests (or handshakes) per CPU-second of each
proxy's processes, and the ratios hopwire/nginx and hopwire/Traefik against the targets.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hopwire.http.tls import self_signed
from run import (
    ROOT,
    cpu_seconds,
    free_port,
    nginx_proxy,
    start_hopwire,
    start_nginx,
    stop,
    tree,
    wait_port,
    wrk,
)

BODIES = {"12B": 12, "16KiB": 16 * 1024}
# one protocol and cipher for all three (nginx: ssl_protocols/ssl_ciphers to the same)
TLS_OPTIONS = "{maxVersion: VersionTLS12, cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]}"
# (mode, body, most-of-nginx, most-of-traefik) targets: hopwire/other per CPU-s at least
TARGETS = [
    ("keep-alive", "12B", 0.5, 2.0),
    ("keep-alive", "16KiB", 0.5, 2.0),
    ("handshake", "12B", 0.7, None),
]


def wrk_tls(
    port: int, path: str, seconds: float, conns: int, close: bool
) -> tuple[float, float, int]:
    """(req/s, p99 ms, requests) over HTTPS; ``close``: a new connection per request."""
    headers = ["Host: bench.test", *(["Connection: close"] if close else [])]
    rps, _, p99, total = wrk(port, path, seconds, conns, headers, scheme="https")
    return rps, p99, total


def wrk_http(port: int, path: str, seconds: float, conns: int) -> tuple[float, float, int]:
    rps, _, p99, total = wrk(port, path, seconds, conns)
    return rps, p99, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tls.md"))
    ap.add_argument("--no-traefik", action="store_true")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: run bench/install-deps.sh as root")
    binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    with_traefik = not args.no_traefik and os.path.exists(binary)

    tmp = Path(tempfile.mkdtemp(prefix="hopwire-tls-bench-"))
    tmp.chmod(0o755)
    docroot = tmp / "www"
    docroot.mkdir()
    for label, size in BODIES.items():
        (docroot / label).write_bytes(b"x" * size)
    # one ECDSA P-256 certificate for all three: the one hopwire makes as its default
    cert = self_signed(str(tmp))
    crt, key = cert.cert_file, cert.key_file
    be, nx, hw, hw_plain, hw_int, bare, bare_int, tr = (free_port() for _ in range(8))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_nginx(
                tmp,
                "backend",
                f"server {{ listen 127.0.0.1:{be} backlog=4096; root {docroot}; }}",
            )
        )
        nginx = start_nginx(
            tmp,
            "proxy",
            nginx_proxy(
                f"127.0.0.1:{nx} ssl",
                be,
                server=f"ssl_certificate {crt}; ssl_certificate_key {key};\n"
                "        ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;",
                http="ssl_session_cache shared:SSL:10m;",
            ),
        )
        procs.append(nginx)
        route = f"""
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be}"}}]}}}}}}
"""
        (tmp / "hopwire.yml").write_text(f"""
workers: 1
entryPoints:
  web: {{address: "127.0.0.1:{hw_plain}"}}
  websecure: {{address: "127.0.0.1:{hw}", http: {{tls: {{}}}}}}
  internal: {{address: "127.0.0.1:{hw_int}"}}
tls:
  certificates: [{{certFile: "{crt}", keyFile: "{key}"}}]
  stores: {{default: {{defaultCertificate: {{certFile: "{crt}", keyFile: "{key}"}}}}}}
  options: {{default: {TLS_OPTIONS}}}
{route}""")
        (tmp / "bare.yml").write_text(f"""
workers: 1
entryPoints:
  web: {{address: "127.0.0.1:{bare}"}}
  internal: {{address: "127.0.0.1:{bare_int}"}}
{route}""")
        hopwire = start_hopwire(tmp / "hopwire.yml")
        procs.append(hopwire)
        plain_only = start_hopwire(tmp / "bare.yml")
        procs.append(plain_only)
        targets = {"hopwire": (hw, hopwire.pid), "nginx": (nx, nginx.pid)}
        if with_traefik:
            (tmp / "traefik-dynamic.yml").write_text(f"""
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be, tls: {{}}}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be}"}}]}}}}}}
tls:
  certificates: [{{certFile: "{crt}", keyFile: "{key}"}}]
  stores: {{default: {{defaultCertificate: {{certFile: "{crt}", keyFile: "{key}"}}}}}}
  options: {{default: {TLS_OPTIONS}}}
""")
            (tmp / "traefik.yml").write_text(f"""
entryPoints:
  websecure: {{address: "127.0.0.1:{tr}"}}
providers:
  file: {{filename: "{tmp / "traefik-dynamic.yml"}"}}
log: {{level: ERROR}}
""")
            traefik = subprocess.Popen(
                [binary, f"--configFile={tmp / 'traefik.yml'}"],
                stdout=open(tmp / "traefik.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                env={**os.environ, "GOMAXPROCS": "1"},
            )
            procs.append(traefik)
            targets["traefik"] = (tr, traefik.pid)
        for port in (be, nx, hw, hw_plain, bare, *(p for p, _ in targets.values())):
            wait_port(port)
        time.sleep(2.0)  # Traefik's file provider
        runs: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}

        def measure(mode: str, label: str, name: str, pid: int, go: object) -> None:
            pids = tree(pid)
            cpu0 = cpu_seconds(pids)
            rps, p99, total = go()  # type: ignore[operator]
            cpu = cpu_seconds(pids) - cpu0
            per_cpu = total / cpu if cpu > 0 else float("nan")
            runs.setdefault((mode, label, name), []).append((rps, p99, per_cpu))
            print(
                f"{mode:10} {label:6} {name:14} {rps:9.0f} req/s {per_cpu:9.0f} per CPU-s",
                flush=True,
            )

        plan = [("keep-alive", label, False, 32) for label in BODIES] + [
            ("handshake", "12B", True, 16)
        ]
        for _mode, label, close, conns in plan:  # warm up
            for port, _ in targets.values():
                wrk_tls(port, f"/{label}", 1, conns, close)
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}", flush=True)
            for mode, label, close, conns in plan:
                for name, (port, pid) in targets.items():
                    measure(
                        mode,
                        label,
                        name,
                        pid,
                        lambda port=port, label=label, close=close, conns=conns: wrk_tls(
                            port, f"/{label}", args.seconds, conns, close
                        ),
                    )
            for name, port, pid in (
                ("hopwire+tls", hw_plain, hopwire.pid),
                ("hopwire", bare, plain_only.pid),
            ):
                measure(
                    "plain",
                    "12B",
                    name,
                    pid,
                    lambda port=port: wrk_http(port, "/12B", args.seconds, 32),
                )

        def med(key: tuple[str, str, str]) -> list[float]:
            return [statistics.median(c) for c in zip(*runs[key], strict=True)]

        lines = [
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
            f"wrk -t1, {args.rounds} interleaved rounds of {args.seconds:g}s, medians. "
            "One ECDSA P-256 certificate for all; 1 worker each (Traefik GOMAXPROCS=1); "
            "backend: nginx static files over plain HTTP.",
            "",
            "| mode | body | proxy | req/s | p99 ms | req per CPU-s |",
            "| --- | --- | --- | ---: | ---: | ---: |",
        ]
        for (mode, label, name), _ in runs.items():
            rps, p99, per_cpu = med((mode, label, name))
            lines.append(f"| {mode} | {label} | {name} | {rps:,.0f} | {p99:.2f} | {per_cpu:,.0f} |")
        lines += [
            "",
            "| mode | body | hopwire/nginx per CPU-s | target | hopwire/Traefik per CPU-s "
            "| target |",
            "| --- | --- | ---: | --- | ---: | --- |",
        ]
        for mode, label, vs_nginx, vs_traefik in TARGETS:
            ours = med((mode, label, "hopwire"))[2]
            nx_ratio = ours / med((mode, label, "nginx"))[2]
            cells = [
                f"{nx_ratio:.2f}",
                f"≥ {vs_nginx} {'met' if nx_ratio >= vs_nginx else 'missed'}",
            ]
            if with_traefik:
                tr_ratio = ours / med((mode, label, "traefik"))[2]
                verdict = (
                    "—"
                    if vs_traefik is None
                    else (f"≥ {vs_traefik} {'met' if tr_ratio >= vs_traefik else 'missed'}")
                )
                cells += [f"{tr_ratio:.2f}", verdict]
            else:
                cells += ["—", "Traefik not installed"]
            lines.append(f"| {mode} | {label} | " + " | ".join(cells) + " |")
        with_tls = med(("plain", "12B", "hopwire+tls"))[2]
        without = med(("plain", "12B", "hopwire"))[2]
        lines += [
            "",
            f"Plain HTTP beside a TLS entrypoint: {with_tls:,.0f} req per CPU-s against "
            f"{without:,.0f} without any TLS ({with_tls / without:.2f}).",
        ]
        table = "\n".join(lines)
        print("\n" + table)
        Path(args.out).write_text(table + "\n")
    finally:
        stop(procs, tmp)


if __name__ == "__main__":
    main()
