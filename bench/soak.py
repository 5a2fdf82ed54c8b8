"""make soak: keep-alive load through hopwire while everything around it changes.

For ``--seconds`` (SOAK_SECONDS, default 300), with tracing on (every request sampled) and the
file provider watched:

    every 200 ms   the dynamic file is rewritten (a header value changes, a router comes and goes)
    every 1 s      SIGHUP (a new generation of workers, the old one drained)
    every 5 s      a worker is SIGKILLed (the master starts another)
    every 10 s     the OTLP receiver is stopped and started again

With ``--kubernetes`` the routes come from the Kubernetes CRD provider instead, read from the
tests' fake API server (tests/kubeapi.py), and the file changes are replaced by cluster ones:

    every 200 ms   the IngressRoute's middleware changes (a header value); an extra
                   IngressRoute comes and goes
    every 1 s      the Service's EndpointSlice moves to the other of two backend ports
    every 5 s      every open watch ends with 410 Gone (the providers list again)
    every 10 s     the API server restarts, its history forgotten

Clients: ``--clients`` threads, each on its own keep-alive connection, checking every answer
(status 200, the whole body).  A request whose connection was closed before any byte of an
answer (a killed worker's connections, a keep-alive connection closed by a draining worker
as the next request left) is sent again on a new connection, as HTTP clients do for an
idempotent request (RFC 9110 §9.2.2), and counted apart; every other problem is a failure.

Prints one JSON object (and writes bench/results/soak.md): requests, failed (must be 0),
resent, spans exported and dropped, per-worker RSS min/max and open fds min/max.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, free_port, start_nginx, stop, wait_port

sys.path.insert(0, str(ROOT))

BODY = 4096


class Clients:
    def __init__(self, port: int, count: int):
        self.port = port
        self.requests = 0
        self.failed = 0
        self.resent = 0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(30)

    def one(self, conn: http.client.HTTPConnection) -> tuple[int, bytes]:
        conn.request("GET", "/data")
        resp = conn.getresponse()
        return resp.status, resp.read()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.done.is_set():
            try:
                try:
                    status, body = self.one(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()  # closed before any byte of the answer: send it again
                    with self.lock:
                        self.resent += 1
                    status, body = self.one(conn)
                ok = status == 200 and len(body) == BODY
                problem = "" if ok else f"status {status}, {len(body)} bytes"
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                problem = f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.requests += 1
                if problem:
                    self.failed += 1
                    if len(self.problems) < 20:
                        self.problems.append(problem)


def dynamic(backend: int, n: int) -> str:
    extra = f'    extra{n % 3}: {{rule: "PathPrefix(`/extra`)", service: be}}\n' if n % 2 else ""
    return f"""http:
  routers:
    all: {{rule: "PathPrefix(`/`)", service: be, middlewares: [tag]}}
{extra}  middlewares:
    tag: {{headers: {{customRequestHeaders: {{X-Soak: "{n}"}}}}}}
  services:
    be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{backend}"}}]}}}}
"""


class Cluster:
    """``--kubernetes``: the fake API server, and the objects it changes."""

    def __init__(self, backends: tuple[int, int]):
        from tests.kubeapi import FakeApiServer

        self.api = FakeApiServer(bookmark_every=1.0)
        self.backends = backends
        self.api.apply(
            {
                "kind": "Service",
                "metadata": {"name": "be", "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
        self.endpoints(0)
        self.route(0)

    def endpoints(self, n: int) -> None:
        self.api.apply(
            {
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "be-1",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "be"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": self.backends[n % 2], "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            }
        )

    def route(self, n: int) -> None:
        self.api.apply(
            {
                "kind": "Middleware",
                "metadata": {"name": "tag", "namespace": "default"},
                "spec": {"headers": {"customRequestHeaders": {"X-Soak": str(n)}}},
            }
        )
        main = {
            "match": "PathPrefix(`/`)",
            "kind": "Rule",
            "middlewares": [{"name": "tag"}],
            "services": [{"name": "be", "port": 80}],
        }
        self.api.apply(
            {
                "kind": "IngressRoute",
                "metadata": {"name": "all", "namespace": "default"},
                "spec": {"routes": [main]},
            }
        )
        if n % 2:
            extra = {**main, "match": "PathPrefix(`/extra`)", "middlewares": []}
            self.api.apply(
                {
                    "kind": "IngressRoute",
                    "metadata": {"name": "extra", "namespace": "default"},
                    "spec": {"routes": [extra]},
                }
            )
        elif n:
            self.api.delete("IngressRoute", "extra")

    def close(self) -> None:
        self.api.stop()


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text(text)
    os.replace(tmp, path)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def workers_of(master: int, exporters: set[int]) -> list[int]:
    return [p for p in children(master) if p not in exporters]


def rss_and_fds(pid: int) -> tuple[int, int] | None:
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    return rss, fds


def metric(internal: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{internal}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def start_sink(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.md"))
    ap.add_argument(
        "--kubernetes", action="store_true", help="routes from the CRD provider, changed live"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-soak-"))
    tmp.chmod(0o755)
    (tmp / "www").mkdir()
    (tmp / "www" / "data").write_bytes(b"s" * BODY)
    be, be2, hw, internal, otlp = (free_port() for _ in range(5))
    procs: list[subprocess.Popen[bytes]] = []
    sink = start_sink(otlp)
    cluster: Cluster | None = None
    try:
        procs.append(
            start_nginx(
                tmp,
                "backend",
                f"server {{ listen 127.0.0.1:{be}; listen 127.0.0.1:{be2}; root {tmp / 'www'}; }}",
            )
        )
        dyn = tmp / "dynamic.yml"
        write_atomically(dyn, dynamic(be, 0))
        providers = f'{{file: {{filename: "{dyn}", watch: true}}}}'
        if args.kubernetes:
            cluster = Cluster((be, be2))
            write_atomically(dyn, "")
            providers = f'{{kubernetesCRD: {{endpoint: "{cluster.api.url}"}}}}'

        config = tmp / "hopwire.yml"
        config.write_text(f"""
workers: 2
entryPoints:
  web: {{address: "127.0.0.1:{hw}", transport: {{lifeCycle: {{graceTimeOut: 5s}}}}}}
  internal: {{address: "127.0.0.1:{internal}"}}
providers: {providers}
tracing:
  sampleRate: 1.0
  otlp: {{grpc: {{endpoint: "127.0.0.1:{otlp}", insecure: true}}}}
log: {{level: INFO}}
""")
        log = open(tmp / "hopwire.log", "ab")  # noqa: SIM115
        master = subprocess.Popen(
            [sys.executable, "-m", "hopwire", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        procs.append(master)
        wait_port(hw)
        wait_port(internal)
        time.sleep(1.0)
        clients = Clients(hw, args.clients)
        clients.start()
        start = time.monotonic()
        events = {"dynamic": 0, "sighup": 0, "kills": 0, "receiver_restarts": 0}
        if cluster is not None:
            events.update({"endpoint_moves": 0, "watches_expired": 0, "api_restarts": 0})
        next_move, next_expire, next_api = (start + d for d in (1, 5, 10))
        samples: dict[str, list[int]] = {"rss": [], "fds": []}
        next_dyn, next_hup, next_kill, next_rx, next_sample = (
            start + d for d in (0.2, 1, 5, 10, 1)
        )
        while (now := time.monotonic()) < start + args.seconds:
            if now >= next_dyn:
                events["dynamic"] += 1
                if cluster is not None:
                    cluster.route(events["dynamic"])
                else:
                    write_atomically(dyn, dynamic(be, events["dynamic"]))
                next_dyn += 0.2
            if cluster is not None and now >= next_move:
                events["endpoint_moves"] += 1
                cluster.endpoints(events["endpoint_moves"])
                next_move += 1
            if cluster is not None and now >= next_expire:
                events["watches_expired"] += 1
                cluster.api.expire_watches()
                next_expire += 5
            if cluster is not None and now >= next_api:
                events["api_restarts"] += 1
                cluster.api.restart(down_for=0.3, forget=True)
                next_api += 10
            if now >= next_hup:
                master.send_signal(signal.SIGHUP)
                events["sighup"] += 1
                next_hup += 1
            if now >= next_kill:
                exporters = exporter_pids(tmp / "hopwire.log")
                live = workers_of(master.pid, exporters)
                if live:
                    os.kill(live[0], signal.SIGKILL)
                    events["kills"] += 1
                next_kill += 5
            if now >= next_rx:
                sink.terminate()
                sink.wait(10)
                sink = start_sink(otlp)
                events["receiver_restarts"] += 1
                next_rx += 10
            if now >= next_sample:
                for pid in workers_of(master.pid, exporter_pids(tmp / "hopwire.log")):
                    got = rss_and_fds(pid)
                    if got and got[0]:  # 0: a killed worker not yet reaped
                        samples["rss"].append(got[0])
                        samples["fds"].append(got[1])
                next_sample += 1
            time.sleep(0.02)
        clients.stop()
        time.sleep(2.0)  # the exporters' last batches
        exported = metric(internal, "hopwire_tracing_spans_exported_total")
        dropped = metric(internal, "hopwire_tracing_spans_dropped_total")
        reloads = metric(internal, "hopwire_config_reloads_total")
        summary = {
            "mode": "kubernetes" if cluster is not None else "file",
            "seconds": args.seconds,
            "requests": clients.requests,
            "failed": clients.failed,
            "resent": clients.resent,
            "problems": clients.problems,
            **events,
            "spans_exported": exported,
            "spans_dropped": dropped,
            "config_reloads": reloads,
            "worker_rss_mib": [
                round(min(samples["rss"], default=0) / 2**20, 1),
                round(max(samples["rss"], default=0) / 2**20, 1),
            ],
            "worker_fds": [min(samples["fds"], default=0), max(samples["fds"], default=0)],
        }
        print(json.dumps(summary))
        Path(args.out).write_text(
            f"# soak, {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPUs)\n\n"
            "```json\n" + json.dumps(summary, indent=2) + "\n```\n"
        )
    finally:
        sink.terminate()
        sink.wait(10)
        stop(procs, tmp)
        if cluster is not None:
            cluster.close()


def exporter_pids(log: Path) -> set[int]:
    pids = set()
    for line in log.read_text(errors="replace").splitlines():
        if "span exporter" in line and " ready on " in line:
            try:
                pids.add(int(json.loads(line)["pid"]))
            except (ValueError, KeyError):
                pass
    return pids


if __name__ == "__main__":
    main()
