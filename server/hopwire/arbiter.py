"""The master process: binds, forks, supervises, reloads, stops.

Single-threaded, no event loop, nothing before fork that owns a thread or channel.  Signal
handlers only enqueue the signal and wake the main loop, which dispatches ``handle_<signal>``.

Workers belong to a *generation* (one per loaded config).  Reload starts a new generation on
the same inherited listening sockets, waits until all of it has booted, then drains the old one
with SIGTERM; the listening sockets never close, so no connection is refused.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import mmap
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hopwire import checks
from hopwire import config as config_mod
from hopwire.checks import validate
from hopwire.config import Config, ConfigError
from hopwire.http import tls
from hopwire.kube.provider import NAMES as PROVIDER_NAMES
from hopwire.kube.provider import run_provider
from hopwire.live import POLL, Channel, Watcher
from hopwire.middlewares import limits
from hopwire.supervise import STACK_SIGNAL, Stuck, Supervisor
from hopwire.systemd import Notifier, listen_fds
from hopwire.telemetry import logs, metrics, otlplogs
from hopwire.telemetry.exporter import run_exporter
from hopwire.telemetry.metrics import default_buckets as metrics_default_buckets
from hopwire.telemetry.otlplogs import LogSink
from hopwire.telemetry.records import APP_LOG
from hopwire.worker import BOOT_ERROR, HEARTBEAT, TICK, run_worker

log = logging.getLogger("hopwire.master")

SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
BOOT_TIMEOUT = 30.0
PROVIDERS = ("kubernetesCRD", "kubernetesIngress")  # forked provider processes, by index
PROVIDER_WAIT = 10.0  # at start, how long the workers wait for the providers' first reading
BACKOFF_MAX = 5.0
HEALTHY_BEAT = 8 * TICK  # a worker that missed eight ticks is not serving


@dataclass
class WorkerProc:
    pid: int
    slot: int
    generation: int
    heartbeat: mmap.mmap
    started: float
    retiring: bool = False  # sent SIGTERM: draining, not to be replaced

    def last_beat(self) -> float:
        return float(HEARTBEAT.unpack_from(self.heartbeat, 0)[0])


@dataclass
class Listener:
    address: str
    reuse_port: bool
    sock: socket.socket


@dataclass
class Source:
    """Where the config came from, so a reload reads it the same way."""

    path: str | None
    flags: list[str]
    environ: dict[str, str] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)  # the provider processes' files

    def load(self) -> Config:
        return checks.load(self.path, self.flags, self.environ, self.snapshots)


def bind(address: str, reuse_port: bool) -> socket.socket:
    host, port = config_mod.parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host and ":" not in host:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host or "0.0.0.0", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Arbiter:
    def __init__(self, config: Config, source: Source):
        self.config = config
        self.source = source
        self.pid = os.getpid()
        self.listeners: dict[str, Listener] = {}
        # the two kinds of children, each with its supervisor and its own backoff
        self.worker_sup: Supervisor[WorkerProc] = Supervisor()
        self.exporter_sup: Supervisor[int] = Supervisor()  # pid -> index
        self.provider_sup: Supervisor[int] = Supervisor()  # pid -> index in PROVIDERS
        self.retired_providers: set[int] = set()
        self.provider_refused = False
        self.provider_dir: str | None = None
        self.stuck = Stuck()
        self.generation = 0
        self.count = config.worker_count
        self.signals: list[int] = []
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.notifier = Notifier()
        self.stopping = False
        self.stop_deadline = 0.0
        self.last_watchdog = 0.0
        self.watchdog_fed = True
        self.exit_code = 0
        # span exporters (only when something is exported): the current set's in exporter_sup
        self.retired_exporters: set[int] = set()
        self.exporter_set = 0
        self.span_dir: str | None = None
        self.span_paths: list[str] = []
        self.instance_id = str(uuid.uuid4())
        self.exporters_stopping = False
        # exporters of a replaced tracing configuration: pid -> the last generation whose
        # workers send to them; signalled once no worker of that generation is left
        self.draining_exporters: dict[int, int] = {}
        self.metrics_dir = ""
        self.started_ns = time.time_ns()  # the start of the cumulative OTLP metrics
        self.log_sink: LogSink | None = None  # log.otlp: the master's own lines
        self.last_sample = 0.0
        self.tls_store: tls.Store | None = None  # the current generation's, inherited by workers
        self.shared: dict[str, Any] = {}  # state the generation's workers share (rate limits)
        self.channel: Channel | None = None  # live dynamic configuration to running workers
        self.watcher: Watcher | None = None  # providers.file with watch

    @property
    def workers(self) -> dict[int, WorkerProc]:
        return self.worker_sup.children

    @property
    def respawn_at(self) -> dict[int, float]:  # slot -> when its worker starts again
        return self.worker_sup.respawn_at

    @property
    def exporters(self) -> dict[int, int]:  # pid -> index, the current set
        return self.exporter_sup.children

    @exporters.setter
    def exporters(self, value: dict[int, int]) -> None:
        self.exporter_sup.children = value

    @property
    def exporter_respawn(self) -> dict[int, float]:  # index -> when it starts again
        return self.exporter_sup.respawn_at

    # -- start -----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self.serve()
        finally:
            self.cleanup()  # children leave through os._exit and never get here

    def serve(self) -> int:
        log_cfg = self.config.log
        logs.setup(log_cfg.level, log_cfg.filePath, "master", log_cfg.format)
        if log_cfg.otlp is not None:
            sink = self.log_sink = LogSink([], APP_LOG, self.log_records_dropped)

            def deliver(item: bytes) -> None:
                sink.add(item)
                sink.flush()

            otlplogs.install(deliver, "master")
        try:
            self.tls_store = tls.build(self.config)
        except tls.TLSError as exc:
            for line in exc.errors:
                log.error("config error: %s", line)
            return 2
        self.shared = limits.shared_state(self.config)
        try:
            activated = self.activated_sockets()
        except ValueError as exc:
            log.error("config error: %s", exc)
            return 2
        try:
            self.listeners = self.bind_all(self.config, activated)
        except OSError as exc:
            log.error("cannot listen: %s", exc)
            return 1
        # a fresh multiprocess directory private to this instance, before anything forks
        self.metrics_dir = tempfile.mkdtemp(prefix="hopwire-metrics-")
        prom = self.config.metrics.prometheus
        otlp_metrics = self.config.metrics.otlp
        metrics.init(
            self.metrics_dir,
            tuple(prom.buckets) if prom else metrics_default_buckets(),
            tuple(otlp_metrics.explicitBoundaries) if otlp_metrics is not None else (),
        )
        metrics.family("last_reload").set(time.time())
        for role in ("worker", "exporter", "provider"):
            metrics.family("restarts").labels(role)  # 0 until one dies: a series to alert on
        self.channel = Channel()
        if self.start_providers() and not self.wait_providers():
            log.error("a Kubernetes provider was refused by the API server; stopping")
            self.kill_all(signal.SIGTERM)
            self.reap(block=True)
            return 2
        self.watch(self.config)
        for sig in SIGNALS:
            signal.signal(sig, self.enqueue)
        signal.siginterrupt(signal.SIGCHLD, False)
        self.generation = 1
        self.start_exporters()
        if not self.wait_exporters():
            log.error("span exporter did not start; stopping")
            self.kill_all(signal.SIGKILL)
            self.reap(block=True)
            return 1
        slots = [self.spawn(slot) for slot in range(self.count)]
        if not self.wait_booted(slots):
            log.error("workers failed to start; stopping")
            self.kill_all(signal.SIGKILL)
            self.reap(block=True)
            return 1
        eps = ", ".join(f"{n}={ln.address}" for n, ln in self.listeners.items())
        log.info("hopwire %d: %d worker(s) serving %s", self.pid, self.count, eps)
        self.notifier.notify(
            "READY=1", f"STATUS=serving with {self.count} workers", f"MAINPID={self.pid}"
        )
        return self.loop()

    def activated_sockets(self) -> dict[str, Listener]:
        """Sockets systemd passed (hopwire.socket), as the listeners of the entrypoints their
        FileDescriptorName= names; the entrypoint's address is then not bound."""
        passed = listen_fds()
        unknown = sorted(set(passed) - set(self.config.entryPoints))
        if unknown:
            for sock in passed.values():
                sock.close()
            raise ValueError(
                f"LISTEN_FDNAMES: {', '.join(unknown)} names no entrypoint (entrypoints: "
                f"{', '.join(self.config.entryPoints)}); set FileDescriptorName= in the socket unit"
            )
        listeners = {}
        for name, sock in passed.items():
            ep = self.config.entryPoints[name]
            shown = sock.getsockname()
            log.info("entrypoint %s: serving the socket systemd passed (%s)", name, shown)
            listeners[name] = Listener(ep.address, ep.reusePort, sock)
        return listeners

    def bind_all(self, config: Config, current: dict[str, Listener]) -> dict[str, Listener]:
        """Listeners for ``config``, reusing every socket whose address is unchanged."""
        by_address = {(ln.address, ln.reuse_port): ln for ln in current.values()}
        result: dict[str, Listener] = {}
        fresh: list[socket.socket] = []
        try:
            for name, ep in config.entryPoints.items():
                old = by_address.get((ep.address, ep.reusePort))
                if old is None:
                    sock = bind(ep.address, ep.reusePort)
                    fresh.append(sock)
                    old = Listener(ep.address, ep.reusePort, sock)
                result[name] = old
        except OSError as exc:
            for sock in fresh:
                sock.close()
            raise OSError(exc.errno, f"{name} ({ep.address}): {exc.strerror}")
        return result

    def fork(self, what: str, main: Any, *args: Any) -> int:
        """Fork a child that runs ``main(*args)`` and exits with its code; never returns in it."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(self.wake_r)
                os.close(self.wake_w)
                code = main(*args)
            except BaseException:
                logging.getLogger("hopwire.master").exception("%s crashed", what)
            finally:
                logging.shutdown()
                os._exit(code)
        return pid

    def spawn(self, slot: int) -> int:
        heartbeat = mmap.mmap(-1, HEARTBEAT.size)
        HEARTBEAT.pack_into(heartbeat, 0, 0.0)
        sockets = {name: ln.sock for name, ln in self.listeners.items()}
        config = self.config
        pid = self.fork(
            "worker",
            run_worker,
            config,
            sockets,
            heartbeat,
            slot,
            self.pid,
            self.span_paths,
            self.tls_store,
            self.shared,
            self.channel,
        )
        self.workers[pid] = WorkerProc(pid, slot, self.generation, heartbeat, time.monotonic())
        return pid

    # -- Kubernetes providers ----------------------------------------------------------------

    @property
    def providers(self) -> dict[int, int]:  # pid -> index in PROVIDERS
        return self.provider_sup.children

    def start_providers(self) -> bool:
        """Fork a process per configured Kubernetes provider not running yet; each writes
        its snapshot file, which every load of the configuration merges
        (``Source.snapshots``).  False: none is configured."""
        wanted = [i for i, name in enumerate(PROVIDERS) if getattr(self.config.providers, name)]
        if self.provider_dir is None and wanted:
            self.provider_dir = tempfile.mkdtemp(prefix="hopwire-providers-")
        self.source.snapshots = [self.snapshot(i) for i in wanted]
        running = set(self.providers.values())
        for index in wanted:
            if index not in running:
                self.spawn_provider(index)
        return bool(wanted)

    def snapshot(self, index: int) -> str:
        assert self.provider_dir is not None
        return os.path.join(self.provider_dir, f"{PROVIDER_NAMES[PROVIDERS[index]]}.json")

    def spawn_provider(self, index: int) -> None:
        path = self.snapshot(index)
        src = self.source
        others = [p for p in src.snapshots if p != path]  # the other provider's objects

        def base() -> Config:
            """The configuration without this provider's objects, as it is on disk now."""
            return checks.load(src.path, src.flags, src.environ, others, quiet=True)

        files = self.config.providers.file
        # what the base is read from: a change there is checked again (a route may refer to
        # a middleware of the file provider, or of the other Kubernetes provider)
        watched = Watcher(src.path, files if files is not None and files.watch else None, 0, others)
        pid = self.fork(
            "provider",
            run_provider,
            self.config,
            PROVIDERS[index],
            path,
            path[:-5] + "-files",
            base,
            watched,
        )
        self.providers[pid] = index

    def wait_providers(self) -> bool:
        """Before the first workers: their first reading of the cluster, for at most
        PROVIDER_WAIT seconds (a cluster that cannot be reached does not keep the file
        provider's routes from serving; its objects are applied once they are read).
        False: a provider was refused by the API server (it logged why): start-up stops."""
        deadline = time.monotonic() + PROVIDER_WAIT
        while time.monotonic() < deadline:
            self.reap(block=False, during_boot=True)
            if self.provider_refused:
                return False
            if all(os.path.exists(p) for p in self.source.snapshots):
                break
            time.sleep(0.05)
        else:
            log.warning(
                "the Kubernetes provider(s) read nothing in %gs: serving without their "
                "objects until they do (see their log lines)",
                PROVIDER_WAIT,
            )
            return True
        try:
            new = self.source.load()
            store = tls.build(new)
        except ConfigError as exc:
            self.rejected(exc.errors)
            return True
        except tls.TLSError as exc:
            self.rejected(exc.errors)
            return True
        self.config, self.tls_store = new, store
        self.shared = limits.shared_state(new)
        return True

    def restart_providers(self, before: Config, new: Config) -> None:
        """A reload that changed a provider's options (or the log's) starts it again."""
        old = {index: pid for pid, index in self.providers.items()}
        for index, name in enumerate(PROVIDERS):
            options = getattr(new.providers, name)
            pid = old.get(index)
            same = options == getattr(before.providers, name) and new.log == before.log
            if pid is not None and same:
                continue
            if pid is not None:
                del self.providers[pid]
                self.retired_providers.add(pid)
                self.signal(pid, signal.SIGTERM)
            if options is None and self.provider_dir is not None:
                path = self.snapshot(index)
                if os.path.exists(path):
                    os.unlink(path)  # its objects leave with it (the watcher sees the change)
        read = self.source.snapshots
        self.start_providers()  # on self.config: ``new``, which the reload applied
        if set(read) - set(self.source.snapshots):
            # the configuration just applied was read with the removed provider's objects
            self.files_changed()

    def provider_exited(self, pid: int, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if pid in self.retired_providers:
            self.retired_providers.discard(pid)
            return
        index = self.providers.pop(pid)
        if self.stopping:
            return
        if code == 2 and self.generation == 0:  # refused before any worker: start-up stops
            self.provider_refused = True
            return
        metrics.family("restarts").labels("provider").inc()
        delay = self.provider_sup.died(index, time.monotonic())
        log.error(
            "%s provider (pid %d) died (%s); restarting it in %.3fs",
            PROVIDERS[index],
            pid,
            f"signal {-code}" if code < 0 else f"exit {code}",
            delay,
        )

    # -- span exporters ----------------------------------------------------------------------

    def start_exporters(self) -> None:
        """Fork the span exporter(s) of the current config; workers get their socket paths."""
        tracing = self.config.tracing
        if tracing is not None and not self.config.traces_anything():
            log.info(
                "tracing is switched off on every entrypoint and router: "
                "no span exporter is started"
            )
        if not self.config.exports_anything():
            self.set_span_paths([])
            return
        if self.span_dir is None:
            self.span_dir = tempfile.mkdtemp(prefix="hopwire-spans-")
        self.exporter_set += 1
        count = tracing.exporters if tracing is not None else 1
        self.set_span_paths(
            [
                os.path.join(self.span_dir, f"exporter-{self.exporter_set}-{i}.sock")
                for i in range(count)
            ]
        )
        for index in range(count):
            self.spawn_exporter(index)

    def set_span_paths(self, paths: list[str]) -> None:
        """The exporters' paths, for the workers started next and the master's own log."""
        self.span_paths = paths
        if self.log_sink is not None:
            self.log_sink.paths = paths

    def spawn_exporter(self, index: int) -> None:
        config = self.config
        grace = max(e.transport.lifeCycle.graceTimeOut for e in config.entryPoints.values())
        flush = min(5.0, grace) if grace else 1.0
        path = self.span_paths[index]
        pid = self.fork(
            "exporter",
            run_exporter,
            config,
            path,
            self.instance_id,
            index,
            flush,
            self.metrics_dir,
            self.started_ns,
        )
        self.exporters[pid] = index

    def log_records_dropped(self, records: int) -> None:
        if metrics.enabled():
            metrics.family("otlp_dropped").labels("log").inc(records)

    def wait_exporters(self) -> bool:
        """Wait until every exporter of the current set receives on its socket (it renames
        its socket into place once it does), so that no worker sends spans into a path
        nobody reads; False when one exited or did not get there in time."""
        pids = set(self.exporters)
        return self.wait_boot(
            lambda: pids <= set(self.exporters),
            lambda: all(os.path.exists(path) for path in self.span_paths),
        )

    def retire_exporters(self) -> None:
        for pid in self.exporters:
            self.retired_exporters.add(pid)
            self.signal(pid, signal.SIGTERM)
        self.exporters = {}
        self.exporter_respawn.clear()

    def wait_booted(self, pids: list[int]) -> bool:
        """Wait until every worker in ``pids`` has ticked once; False if one failed or hung."""
        return self.wait_boot(
            lambda: all(p in self.workers for p in pids),
            lambda: all(self.workers[p].last_beat() > 0 for p in pids),
        )

    def wait_boot(self, alive: Callable[[], bool], ready: Callable[[], bool]) -> bool:
        """Until ``ready()`` (True), reaping meanwhile; False as soon as ``alive()`` is not
        (a child that was starting exited), or after BOOT_TIMEOUT."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            self.reap(block=False, during_boot=True)
            if not alive():
                return False
            if ready():
                return True
            self.watchdog()  # while a generation boots, the running one still serves
            time.sleep(0.02)
        return False

    # -- main loop -------------------------------------------------------------------------

    def enqueue(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        try:
            os.write(self.wake_w, b"!")
        except OSError:
            pass

    def loop(self) -> int:
        while True:
            try:
                select.select([self.wake_r], [], [], POLL if self.watcher else 0.5)
            except InterruptedError:
                pass
            try:
                while os.read(self.wake_r, 256):
                    pass
            except BlockingIOError:
                pass
            while self.signals:
                sig = self.signals.pop(0)
                handler = getattr(self, "handle_" + signal.Signals(sig).name[3:].lower())
                handler()
            self.reap(block=False)
            if self.stopping:
                self.retire_drained_exporters()
                if not self.workers and (self.exporters or self.retired_exporters):
                    if not self.exporters_stopping:
                        # workers flushed their span records on the way out; now the exporters
                        self.exporters_stopping = True
                        self.retire_exporters()
                        self.stop_deadline = time.monotonic() + 8.0
                elif not self.workers and not self.providers and not self.retired_providers:
                    self.cleanup()
                    self.notifier.notify("STATUS=stopped")
                    log.info("hopwire %d stopped", self.pid)
                    return self.exit_code
                if time.monotonic() > self.stop_deadline:
                    log.warning("processes did not stop in time; killing them")
                    self.kill_all(signal.SIGKILL)
                continue
            if self.watcher is not None and self.watcher.poll(time.monotonic()):
                self.files_changed()
            self.check_heartbeats()
            self.maintain()
            self.watchdog()
            self.sample()

    def reap(self, block: bool, during_boot: bool = False) -> None:
        while (
            self.workers
            or self.exporters
            or self.retired_exporters
            or self.draining_exporters
            or self.providers
            or self.retired_providers
        ):
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            self.archive_metrics(pid)
            if pid in self.providers or pid in self.retired_providers:
                self.provider_exited(pid, status)
                continue
            proc = self.workers.pop(pid, None)
            self.stuck.forget(pid)
            if proc is None:
                self.exporter_exited(pid, status)
                continue
            code = os.waitstatus_to_exitcode(status)
            if proc.retiring or self.stopping:
                log.info("worker %d (pid %d) exited (%d)", proc.slot, pid, code)
                continue
            if code == BOOT_ERROR or during_boot:
                log.error("worker %d (pid %d) failed to boot (exit %d)", proc.slot, pid, code)
                if proc.generation == self.generation and not during_boot:
                    self.begin_stop(immediate=True)
                    self.exit_code = 1
                continue
            metrics.family("restarts").labels("worker").inc()
            delay = self.worker_sup.died(proc.slot, time.monotonic())
            log.error(
                "worker %d (pid %d) died unexpectedly (%s); restarting in %.3fs",
                proc.slot,
                pid,
                f"signal {-code}" if code < 0 else f"exit {code}",
                delay,
            )

    def archive_metrics(self, pid: int) -> None:
        """Fold a dead child's counters into the archive; metrics never stop the master."""
        if not self.metrics_dir:
            return
        try:
            metrics.archive(self.metrics_dir, pid, metrics.keeper(self.config))
        except (OSError, ValueError, RuntimeError, struct.error) as exc:
            log.error("could not archive the metrics of pid %d: %s", pid, exc)

    def exporter_exited(self, pid: int, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if pid in self.retired_exporters:
            self.retired_exporters.discard(pid)
            return
        if self.draining_exporters.pop(pid, None) is not None:
            log.error("span exporter (pid %d) of the previous configuration died", pid)
            return
        index = self.exporters.pop(pid, None)
        if index is None or self.stopping:
            return
        metrics.family("restarts").labels("exporter").inc()
        delay = self.exporter_sup.died(index, time.monotonic())
        log.error(
            "span exporter %d (pid %d) died (%s); restarting it in %.3fs",
            index,
            pid,
            f"signal {-code}" if code < 0 else f"exit {code}",
            delay,
        )

    def retire_drained_exporters(self) -> None:
        for pid, generation in list(self.draining_exporters.items()):
            if not any(p.generation <= generation for p in self.workers.values()):
                del self.draining_exporters[pid]
                self.retired_exporters.add(pid)
                self.signal(pid, signal.SIGTERM)

    def maintain(self) -> None:
        self.retire_drained_exporters()
        now = time.monotonic()
        for index in self.exporter_sup.due(now):
            self.spawn_exporter(index)
        for index in self.provider_sup.due(now):
            self.spawn_provider(index)
        for slot in self.worker_sup.due(now):
            if slot < self.count:
                self.spawn(slot)
        live = {
            p.slot
            for p in self.workers.values()
            if p.generation == self.generation and not p.retiring
        }
        for slot in range(self.count):
            if slot not in live and slot not in self.respawn_at:
                self.spawn(slot)
        for proc in list(self.workers.values()):
            if proc.generation == self.generation and not proc.retiring and proc.slot >= self.count:
                self.retire(proc)

    def check_heartbeats(self) -> None:
        now = time.monotonic()
        timeout = self.config.heartbeatTimeout
        for proc in list(self.workers.values()):
            beat = proc.last_beat()
            since = now - (beat or proc.started)
            if since <= (timeout if beat else BOOT_TIMEOUT):
                self.stuck.forget(proc.pid)  # it ticks again
                continue
            step = self.stuck.step(proc.pid, now)
            if step == STACK_SIGNAL:
                log.error(
                    "worker %d (pid %d) stopped responding for %.1fs; asking for its Python "
                    "stack (in its log), then killing it",
                    proc.slot,
                    proc.pid,
                    since,
                )
            elif step == signal.SIGKILL:
                log.error("worker %d (pid %d) still stuck: killing it", proc.slot, proc.pid)
            if step is not None:
                self.signal(proc.pid, step)

    def sample(self) -> None:
        """Worker states and the master's own process gauges, every few seconds."""
        now = time.monotonic()
        if now - self.last_sample < 2.0:
            return
        self.last_sample = now
        states = {"running": 0, "booting": 0, "draining": 0}
        for proc in self.workers.values():
            state = "draining" if proc.retiring else "running" if proc.last_beat() else "booting"
            states[state] += 1
        for state, count in states.items():
            metrics.family("workers").labels(state).set(count)
        metrics.process_sample("master")

    def healthy(self) -> bool:
        """Every worker slot has a worker whose event loop ticked in the last HEALTHY_BEAT
        seconds (a worker is killed only after heartbeatTimeout, 30 s by default)."""
        now = time.monotonic()
        beating = {
            p.slot
            for p in self.workers.values()
            if not p.retiring and p.last_beat() and now - p.last_beat() < HEALTHY_BEAT
        }
        return all(slot in beating for slot in range(self.count))

    def watchdog(self) -> None:
        """WATCHDOG=1 only while healthy: systemd restarts a hopwire whose workers stopped."""
        period = self.notifier.watchdog
        now = time.monotonic()
        if not period or now - self.last_watchdog < period:
            return
        self.last_watchdog = now
        healthy = self.healthy()
        if healthy != self.watchdog_fed:
            self.watchdog_fed = healthy
            if healthy:
                log.info("every worker is serving again: the systemd watchdog is fed")
            else:
                log.warning("not every worker is serving: the systemd watchdog is not fed")
        if healthy:
            self.notifier.notify("WATCHDOG=1")

    def signal(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def kill_all(self, sig: int) -> None:
        exporters = [*self.exporters, *self.retired_exporters, *self.draining_exporters]
        for pid in [*self.workers, *exporters, *self.providers, *self.retired_providers]:
            self.signal(pid, sig)

    def cleanup(self) -> None:
        for path in (self.span_dir, self.metrics_dir, self.provider_dir):
            if path:
                shutil.rmtree(path, ignore_errors=True)
        if self.channel is not None:
            self.channel.close()

    def retire(self, proc: WorkerProc) -> None:
        proc.retiring = True
        self.signal(proc.pid, signal.SIGTERM)

    # -- signals ---------------------------------------------------------------------------

    def begin_stop(self, immediate: bool) -> None:
        eps = self.config.entryPoints.values()
        budget = max(e.transport.lifeCycle.requestAcceptGraceTimeout for e in eps) + max(
            e.transport.lifeCycle.graceTimeOut for e in eps
        )
        if not self.stopping:
            self.notifier.notify("STOPPING=1")
            for ln in self.listeners.values():
                ln.sock.close()  # workers hold their own copies until they stop accepting
        self.stopping = True
        for pid in self.providers:  # they hold no request: they stop at once
            self.signal(pid, signal.SIGTERM)
        if immediate:
            self.exporters_stopping = True
            self.kill_all(signal.SIGINT)
            self.stop_deadline = time.monotonic() + 2.0
        else:
            # Workers first: their last spans go to the exporters on their way out, and the
            # exporters are told to flush and exit only once every worker has (see loop).
            log.info("graceful stop: draining for up to %.3gs", budget)
            for pid in self.workers:
                self.signal(pid, signal.SIGTERM)
            self.stop_deadline = time.monotonic() + budget + 3.0

    def handle_term(self) -> None:
        self.begin_stop(immediate=self.stopping)  # a second SIGTERM stops at once

    def handle_int(self) -> None:
        self.begin_stop(immediate=True)

    def handle_quit(self) -> None:
        self.begin_stop(immediate=True)

    def handle_chld(self) -> None:
        pass  # reaped by the loop

    def handle_usr1(self) -> None:
        logs.reopen()
        for pid in self.workers:
            self.signal(pid, signal.SIGUSR1)

    def handle_ttin(self) -> None:
        if not self.stopping:
            self.count += 1
            log.info("SIGTTIN: %d workers", self.count)

    def handle_ttou(self) -> None:
        if not self.stopping and self.count > 1:
            self.count -= 1
            log.info("SIGTTOU: %d workers", self.count)

    def handle_hup(self) -> None:
        if self.stopping:
            return
        log.info("reloading configuration")
        try:
            new = self.source.load()
        except ConfigError as exc:
            self.rejected(exc.errors)
            return
        before = self.config
        if self.reload(new):
            self.restart_providers(before, new)
            self.watch(new)

    def rejected(self, errors: list[str]) -> None:
        for line in errors:
            log.error("reload rejected, keeping the running config: %s", line)
        metrics.family("reload_failures").inc()

    def applied(self, new: Config) -> None:
        """Count an applied configuration; archived series of what it removed disappear."""
        metrics.family("reloads").inc()
        metrics.family("last_reload").set(time.time())
        try:
            metrics.compact(self.metrics_dir, metrics.keeper(new))
        except (OSError, ValueError, RuntimeError) as exc:
            log.error("could not compact archived metrics: %s", exc)

    # -- live configuration ----------------------------------------------------------------

    def watch(self, config: Config) -> None:
        """Watch the main file and the file provider's files when ``watch`` is on, and the
        Kubernetes providers' files when they run."""
        provider = config.providers.file
        if provider is not None and not provider.watch:
            provider = None
        if provider is None and not self.source.snapshots:
            self.watcher = None
            return
        throttle = config.providers.providersThrottleDuration
        self.watcher = Watcher(self.source.path, provider, throttle, self.source.snapshots)

    def files_changed(self) -> None:
        """A watched file changed: apply its dynamic part, in the running workers if it can be."""
        if self.stopping:
            return
        try:
            loaded = self.source.load()
        except ConfigError as exc:
            self.rejected(exc.errors)
            return
        new = loaded
        if loaded.static_part() != self.config.static_part():
            log.warning(
                "the static configuration in %s changed: it applies on SIGHUP "
                "(the dynamic part, http and tls, is applied now)",
                self.source.path,
            )
            new = dataclasses.replace(self.config, http=loaded.http, tls=loaded.tls)
            errors = validate(new)
            if errors:
                self.rejected(errors)
                return
        if new == self.config:
            log.info("configuration files changed without changing the dynamic configuration")
            return
        reason = self.needs_new_workers(new)
        if reason:
            log.info("dynamic configuration changed (%s): applying it with new workers", reason)
            self.reload(new)
            return
        assert self.channel is not None
        try:
            sequence = self.channel.publish(new)
        except (OSError, pickle.PicklingError) as exc:
            self.rejected([f"cannot hand the configuration to the workers: {exc}"])
            return
        self.config = new
        self.applied(new)
        log.info(
            "dynamic configuration %d applied in the running workers: %d router(s), "
            "%d service(s), %d middleware(s)",
            sequence,
            len(new.http.routers),
            len(new.http.services),
            len(new.http.middlewares),
        )

    def needs_new_workers(self, new: Config) -> str:
        """Why ``new`` cannot be swapped into the running workers (empty: it can).  What the
        master makes before fork cannot change under a running worker: certificates and TLS
        contexts, the shared memory of local rate limits, the span exporters."""
        old = self.config
        if new.tls != old.tls:
            return "tls changed: certificates and contexts are built before the workers start"
        for name in old.entryPoints:
            before = tls.entrypoint_tls(old, name) is not None
            if before != (tls.entrypoint_tls(new, name) is not None):
                return f"entrypoint {name} {'stops' if before else 'starts'} terminating TLS"
        if limits.shared_kinds(new) != limits.shared_kinds(old):
            return "local rateLimit/inFlightReq middlewares changed: their memory is shared"
        if new.traces_anything() != old.traces_anything():
            return "tracing is switched on or off: the span exporters start or stop"
        if new.exports_anything() != old.exports_anything():
            return "OTLP export is switched on or off: the exporters start or stop"
        return ""

    def roll_back(self, running: Running, exporters_signal: int | None) -> bool:
        """A reload that could not start: the running configuration is put back, the new
        listeners closed, the new exporters (if any) sent ``exporters_signal``; counted."""
        if exporters_signal is not None:
            for pid in self.exporters:
                self.retired_exporters.add(pid)
                self.signal(pid, exporters_signal)
            self.exporters = running.exporters
            self.set_span_paths(running.span_paths)
        new_listeners = self.listeners
        self.listeners, self.config = running.listeners, running.config
        self.tls_store, self.shared = running.tls_store, running.shared
        kept = {id(ln) for ln in running.listeners.values()}
        for ln in new_listeners.values():
            if id(ln) not in kept:
                ln.sock.close()
        metrics.family("reload_failures").inc()
        self.notifier.notify("READY=1")
        return False

    def reload(self, new: Config) -> bool:
        """Start a generation of workers on ``new``, then drain the old one; False: the
        running configuration keeps serving (the reason is logged and counted)."""
        try:
            store = tls.build(new)  # certificates are read again: a renewed file is picked up
        except tls.TLSError as exc:
            self.rejected(exc.errors)
            return False
        self.notifier.notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )
        try:
            listeners = self.bind_all(new, self.listeners)
        except OSError as exc:
            self.rejected([f"cannot listen on {exc}"])
            self.notifier.notify("READY=1")
            return False
        running = Running(
            self.listeners,
            self.config,
            self.tls_store,
            self.shared,
            dict(self.exporters),
            self.span_paths,
        )
        self.listeners, self.config, self.tls_store = listeners, new, store
        self.shared = limits.shared_state(new)  # as Traefik, a new configuration starts afresh
        tracing_changed = exported(new) != exported(running.config)
        if tracing_changed:
            self.exporters = {}
            self.start_exporters()
            if not self.wait_exporters():
                log.error("reload failed: the new span exporter did not start")
                return self.roll_back(running, signal.SIGKILL)
        self.generation += 1
        self.count = new.worker_count if new.workers != running.config.workers else self.count
        self.respawn_at.clear()
        pids = [self.spawn(slot) for slot in range(self.count)]
        if not self.wait_booted(pids):
            log.error("reload failed: new workers did not start; keeping the running config")
            for pid in pids:
                self.signal(pid, signal.SIGKILL)
            self.generation -= 1
            return self.roll_back(running, signal.SIGTERM if tracing_changed else None)
        for proc in self.workers.values():
            if proc.generation < self.generation and not proc.retiring:
                self.retire(proc)
        if tracing_changed:
            # they take what the old workers send until the last of them has exited, then
            # flush and exit (maintain)
            for pid in running.exporters:
                self.draining_exporters[pid] = self.generation - 1
        kept = {id(ln) for ln in listeners.values()}
        for ln in running.listeners.values():
            if id(ln) not in kept:
                ln.sock.close()
        self.applied(new)
        log.info("reloaded: generation %d with %d worker(s)", self.generation, self.count)
        self.notifier.notify("READY=1", f"STATUS=serving with {self.count} workers")
        return True


def exported(config: Config) -> tuple[Any, ...]:
    """What the exporter processes are made of: a change starts new ones on a reload."""
    return (
        config.tracing,
        config.traces_anything(),
        config.metrics.otlp,
        config.accessLog.otlp if config.accessLog is not None else None,
        config.log,
    )


class Running(NamedTuple):
    """What serves while a reload starts the next generation: put back if it cannot start."""

    listeners: dict[str, Listener]
    config: Config
    tls_store: tls.Store | None
    shared: dict[str, Any]
    exporters: dict[int, int]
    span_paths: list[str]


def run(config: Config, source: Source) -> int:
    try:
        return Arbiter(config, source).run()
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"hopwire: {exc}", file=sys.stderr)
            return 1
        raise
