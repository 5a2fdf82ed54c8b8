"""make bench, HTTP/2 part: h2load over TLS (ALPN h2) through hopwire, nginx and Traefik.

The same certificate (ECDSA P-256, hopwire's own ``tls.self_signed``) and TLS 1.2 with
ECDHE-ECDSA-AES128-GCM-SHA256 for all three, 1 worker / 1 core each (Traefik with
GOMAXPROCS=1), in front of one nginx serving static files over plain HTTP/1.1.  Each proxy is
driven by ``h2load -c 10 -m 10`` (10 connections, 10 streams each) for a fixed time, 12 B and
16 KiB bodies, over several interleaved rounds.  Reported: median requests/s and requests per
CPU-second of each proxy's processes, and hopwire's ratios to nginx and Traefik against the
targets.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hopwire.http.tls import self_signed
from run import ROOT, cpu_seconds, free_port, start_hopwire, start_nginx, stop, tree, wait_port

BODIES = {"12B": 12, "16KiB": 16 * 1024}
TLS_OPTIONS = "{maxVersion: VersionTLS12, cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]}"
# body -> (hopwire/nginx at least, hopwire/Traefik at least) per CPU-second
TARGETS = {"12B": (0.5, 2.5), "16KiB": (0.6, None)}


def h2load(port: int, path: str, seconds: float) -> tuple[float, int]:
    """(req/s, requests succeeded) of ``h2load -c 10 -m 10`` for ``seconds`` over TLS."""
    out = subprocess.run(
        ["h2load", "-c", "10", "-m", "10", "-D", f"{seconds:g}", f"https://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if rps is None or done is None or "h2" not in out:
        raise SystemExit(f"h2load failed on port {port}:\n{out[-2000:]}")
    return float(rps.group(1)), int(done.group(1))


def chart(
    per_cpu: dict[tuple[str, str], float], names: list[str], labels: list[str], out: str
) -> None:
    """Requests per CPU-second of each proxy and body, as bars (matplotlib, `.[bench]`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [per_cpu[(label, name)] for label in labels]
        bars = ax.bar([j + i * width for j in range(len(labels))], values, width, label=name)
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_ylabel("requests per CPU-second of the proxy")
    ax.set_xlabel("response body (HTTP/2 over TLS, h2load -c 10 -m 10)")
    ax.set_title(f"HTTP/2, 1 worker each, {time.strftime('%Y-%m-%d')} on {platform.node()}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "h2.md"))
    ap.add_argument("--chart", default=str(ROOT / "bench" / "results" / "h2.png"))
    ap.add_argument("--no-traefik", action="store_true")
    args = ap.parse_args()
    for tool in ("h2load", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: run bench/install-deps.sh as root")
    binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    with_traefik = not args.no_traefik and os.path.exists(binary)

    tmp = Path(tempfile.mkdtemp(prefix="hopwire-h2-bench-"))
    tmp.chmod(0o755)
    docroot = tmp / "www"
    docroot.mkdir()
    for label, size in BODIES.items():
        (docroot / label).write_bytes(b"x" * size)
    cert = self_signed(str(tmp))
    crt, key = cert.cert_file, cert.key_file
    be, nx, hw, hw_int, tr = (free_port() for _ in range(5))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_nginx(
                tmp, "backend", f"server {{ listen 127.0.0.1:{be} backlog=4096; root {docroot}; }}"
            )
        )
        nginx = start_nginx(
            tmp,
            "proxy",
            f"""
    upstream be {{ server 127.0.0.1:{be}; keepalive 64; }}
    ssl_session_cache shared:SSL:10m;
    server {{
        listen 127.0.0.1:{nx} ssl http2 backlog=4096;
        ssl_certificate {crt}; ssl_certificate_key {key};
        ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
        location / {{ proxy_pass http://be; proxy_http_version 1.1;
                     proxy_set_header Connection ""; proxy_buffering on; }}
    }}""",
        )
        procs.append(nginx)
        (tmp / "hopwire.yml").write_text(f"""
workers: 1
entryPoints:
  websecure: {{address: "127.0.0.1:{hw}", http: {{tls: {{}}}}}}
  internal: {{address: "127.0.0.1:{hw_int}"}}
tls:
  certificates: [{{certFile: "{crt}", keyFile: "{key}"}}]
  stores: {{default: {{defaultCertificate: {{certFile: "{crt}", keyFile: "{key}"}}}}}}
  options: {{default: {TLS_OPTIONS}}}
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be}"}}]}}}}}}
""")
        hopwire = start_hopwire(tmp / "hopwire.yml")
        procs.append(hopwire)
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
        for port in (be, *(p for p, _ in targets.values())):
            wait_port(port)
        time.sleep(2.0)  # Traefik's file provider
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for label in BODIES:  # warm up
            for port, _ in targets.values():
                h2load(port, f"/{label}", 1)
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}", flush=True)
            for label in BODIES:
                for name, (port, pid) in targets.items():
                    pids = tree(pid)
                    cpu0 = cpu_seconds(pids)
                    rps, total = h2load(port, f"/{label}", args.seconds)
                    cpu = cpu_seconds(pids) - cpu0
                    per_cpu = total / cpu if cpu > 0 else float("nan")
                    runs.setdefault((label, name), []).append((rps, per_cpu))
                    print(
                        f"{label:6} {name:8} {rps:9.0f} req/s {per_cpu:9.0f} per CPU-s", flush=True
                    )

        def med(key: tuple[str, str]) -> list[float]:
            return [statistics.median(c) for c in zip(*runs[key], strict=True)]

        lines = [
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; h2load -c 10 -m 10 over TLS 1.2 (ALPN h2), "
            f"{args.rounds} interleaved rounds of {args.seconds:g}s, medians. One ECDSA P-256 "
            "certificate for all; 1 worker each (Traefik GOMAXPROCS=1); backend: nginx static "
            "files over plain HTTP/1.1.",
            "",
            "| body | proxy | req/s | req per CPU-s |",
            "| --- | --- | ---: | ---: |",
        ]
        for (label, name), _ in runs.items():
            rps, per_cpu = med((label, name))
            lines.append(f"| {label} | {name} | {rps:,.0f} | {per_cpu:,.0f} |")
        lines += [
            "",
            "| body | hopwire/nginx per CPU-s | target | hopwire/Traefik per CPU-s | target |",
            "| --- | ---: | --- | ---: | --- |",
        ]
        for label, (vs_nginx, vs_traefik) in TARGETS.items():
            ours = med((label, "hopwire"))[1]
            ratio = ours / med((label, "nginx"))[1]
            cells = [f"{ratio:.2f}", f"≥ {vs_nginx} {'met' if ratio >= vs_nginx else 'missed'}"]
            if with_traefik:
                tr_ratio = ours / med((label, "traefik"))[1]
                verdict = (
                    "—"
                    if vs_traefik is None
                    else f"≥ {vs_traefik} {'met' if tr_ratio >= vs_traefik else 'missed'}"
                )
                cells += [f"{tr_ratio:.2f}", verdict]
            else:
                cells += ["—", "Traefik not installed"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        table = "\n".join(lines)
        print("\n" + table)
        Path(args.out).write_text(table + "\n")
        chart({k: med(k)[1] for k in runs}, list(targets), list(BODIES), args.chart)
    finally:
        stop(procs, tmp)


if __name__ == "__main__":
    main()
