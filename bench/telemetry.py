"""make bench, telemetry part: what metrics and tracing cost hopwire, per request, in CPU.

One hopwire (1 worker) per setting: no telemetry (`bare`), default metrics, metrics with router
labels, default metrics plus a JSON access log to a file, and tracing at sample rate 0, 0.01, 0.1 and 1.0 on top of default metrics, exporting to
a real OTLP/gRPC receiver (bench/otlp_sink.py); each driven by wrk with and without an inbound
sampled traceparent, interleaved over several rounds.  Metrics rows compare with `bare`;
access-log and tracing rows with `metrics` (the default configuration).  CPU counts every
hopwire process: master, worker and span exporter.  Reported: median requests/s, requests per
CPU-second, CPU µs per request and its ratio to tracing off, and the spans each exporter
exported and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, cpu_seconds, free_port, start_nginx, tree, wait_port, wrk

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
METRICS_OFF = "metrics: {prometheus: false}"
ROUTER_LABELS = "metrics: {prometheus: {addRoutersLabels: true}}"
# name -> (config fragment, tracing sample rate or None, baseline)
SCENARIOS: dict[str, tuple[str, float | None, str]] = {
    "bare": (METRICS_OFF, None, "bare"),
    "metrics": ("", None, "bare"),
    "metrics+routers": (ROUTER_LABELS, None, "bare"),
    "metrics+accesslog": ("accessLog: {filePath: ACCESS_LOG}", None, "metrics"),
    "tracing rate 0": ("", 0.0, "metrics"),
    "tracing rate 0.01": ("", 0.01, "metrics"),
    "tracing rate 0.1": ("", 0.1, "metrics"),
    "tracing rate 1.0": ("", 1.0, "metrics"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "telemetry.md"))
    ap.add_argument("--only", default="", help="comma-separated scenarios (and baselines)")
    args = ap.parse_args()
    if args.only:
        wanted = set(args.only.split(","))
        wanted |= {SCENARIOS[n][2] for n in wanted}
        wanted |= {SCENARIOS[n][2] for n in wanted}
        for name in [n for n in SCENARIOS if n not in wanted]:
            del SCENARIOS[name]
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-bench-tracing-"))
    tmp.chmod(0o755)
    (tmp / "www").mkdir()
    (tmp / "www" / "12B").write_bytes(b"x" * 12)
    be_port, sink_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    instances: dict[str, tuple[int, subprocess.Popen[bytes], Path]] = {}
    try:
        procs.append(
            start_nginx(
                tmp,
                "backend",
                f"""
    server {{ listen 127.0.0.1:{be_port} backlog=4096; root {tmp / "www"}; }}""",
            )
        )
        sink = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), "--port", str(sink_port)],
            stdout=subprocess.PIPE,
        )
        procs.append(sink)
        for name, (fragment, rate, _) in SCENARIOS.items():
            port, internal = free_port(), free_port()
            fragment = fragment.replace("ACCESS_LOG", str(tmp / "access.log"))
            tracing = fragment + (
                ""
                if rate is None
                else f"""
tracing:
  sampleRate: {rate}
  otlp: {{grpc: {{endpoint: "127.0.0.1:{sink_port}", insecure: true}}}}"""
            )
            config = tmp / f"{name.replace(' ', '-')}.yml"
            config.write_text(f"""
workers: 1
entryPoints:
  web: {{address: "127.0.0.1:{port}"}}
  internal: {{address: "127.0.0.1:{internal}"}}
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be_port}"}}]}}}}}}
{tracing}
""")
            log = tmp / f"{name.replace(' ', '-')}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "hopwire", "--config", str(config)],
                stdout=open(log, "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
            procs.append(proc)
            instances[name] = (port, proc, log)
        for port, _, _ in instances.values():
            wait_port(port)
        wait_port(be_port)
        time.sleep(1.0)
        results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        for port, _, _ in instances.values():
            wrk(port, "/12B", 1, 32)
        for rnd in range(args.rounds):
            for inbound in (False, True):
                for name, (port, proc, _) in instances.items():
                    pids = tree(proc.pid)
                    cpu0 = cpu_seconds(pids)
                    rps, _, _, total = wrk(
                        port,
                        "/12B",
                        args.seconds,
                        32,
                        headers=[f"traceparent: {PARENT}"] if inbound else [],
                    )
                    cpu = cpu_seconds(pids) - cpu0
                    results.setdefault((name, inbound), []).append((rps, cpu * 1e6 / total))
                    print(
                        f"round {rnd + 1} {'parent' if inbound else 'root  '} {name:10} "
                        f"{rps:9.0f} req/s {cpu * 1e6 / total:6.2f} CPU-us/req",
                        flush=True,
                    )
    finally:
        for p in procs[2:]:
            p.send_signal(signal.SIGTERM)
        for p in procs[2:]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for p in procs[:2]:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    exported: dict[str, str] = {}
    for name, (_, _, log) in instances.items():
        lines = [
            json.loads(x)["msg"]
            for x in log.read_text().splitlines()
            if "span exporter 0 stopped" in x
        ]
        exported[name] = lines[-1].split(": ", 1)[1] if lines else "no exporter"
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; hopwire 1 worker, 12-byte responses from nginx, "
        f"wrk -t1 -c32, {args.rounds} interleaved rounds of {args.seconds:g}s, medians. CPU is "
        "master + worker + span exporter. Spans went to a real OTLP/gRPC receiver.",
        "",
        "| setting | inbound parent | req/s | CPU µs/req | vs baseline | spans (whole run) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for inbound in (False, True):
        for name, (_, _, baseline) in SCENARIOS.items():
            base = statistics.median(c for _, c in results[(baseline, inbound)])
            runs = results[(name, inbound)]
            rps = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            versus = "—" if baseline == name else f"{100 * (cpu / base - 1):+.1f}% vs {baseline}"
            kind = "sampled" if inbound else "none"
            lines.append(
                f"| {name} | {kind} | {rps:,.0f} | {cpu:.2f} | {versus} | {exported[name]} |"
            )
    table = "\n".join(lines)
    print("\n" + table)
    Path(args.out).write_text(table + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
