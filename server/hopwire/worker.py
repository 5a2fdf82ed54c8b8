"""One worker process: a uvloop loop serving the inherited listening sockets.

Everything that owns a socket pool, a task or a timer is built here, after fork.  The worker's
tick (every ``TICK`` seconds) refreshes the clock and the Date bytes, writes the heartbeat the
master watches, checks that the master is alive, and enforces every deadline: read, idle,
response-header and write timeouts of connections and idle timeouts of pooled backend
connections.  No per-request timer is armed.
"""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import functools
import logging
import mmap
import os
import random
import signal
import socket
import ssl
import struct
import sys
import time
from collections import defaultdict
from typing import Any

import uvloop

from hopwire.balancer import Service
from hopwire.config import INTERNAL_ENTRYPOINT, Config, parse_address
from hopwire.entrypoints import EntryPointRuntime, Observing, RouterTarget
from hopwire.http import tls
from hopwire.http.downstream import Downstream
from hopwire.http.listener import TLSListener
from hopwire.http.wire import Clock
from hopwire.live import Channel
from hopwire.middlewares import compile_stages
from hopwire.middlewares.redirect import scheme_redirect
from hopwire.routing import RouteTable
from hopwire.telemetry import logs, metrics, otlplogs
from hopwire.telemetry.accesslog import Writer
from hopwire.telemetry.metrics import WorkerMetrics
from hopwire.telemetry.otlplogs import LogSink
from hopwire.telemetry.propagation import propagated_fields
from hopwire.telemetry.records import APP_LOG
from hopwire.telemetry.tracing import (
    SpanSink,
    Tracer,
    detailed_stages,
)

log = logging.getLogger("hopwire.worker")

TICK = 0.25
FOLD_TICKS = 4  # metrics are folded into prometheus_client once a second
DRAIN_IDLE = 1.0  # while draining, keep-alive connections idle this long are closed
BOOT_ERROR = 3  # exit code of a worker that could not start: the master stops, not loops
HEARTBEAT = struct.Struct("d")
STACK_SIGNAL = signal.SIGUSR2  # the master asks a stuck worker for its stack (supervise.py)


def stack_dump_to(handler: logging.Handler) -> None:
    """Write every thread's Python stack where the log goes when STACK_SIGNAL arrives: by
    faulthandler, from inside the signal handler, whatever the loop is stuck in."""
    stream = getattr(handler, "stream", None) or sys.stderr
    faulthandler.register(STACK_SIGNAL, file=stream, all_threads=True)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",  # free bytes in the heap
            "keepcost",
        )
    ]


class Heap:
    """glibc's heap, tuned for throughput and given back when it holds much that is free.

    ``tune`` stops glibc trimming the heap after every large read buffer (DESIGN §2: 970 →
    3,550 1 MiB requests per CPU-second on this machine).  The price is that memory freed when
    many connections end (slow readers by the hundred, a burst of large bodies) would stay with
    the worker for good; so once a second (``check``) the free bytes are read and, when they
    pass ``GIVE_BACK``, ``malloc_trim`` returns the free pages to the system."""

    GIVE_BACK = 8 * 1024 * 1024

    def __init__(self) -> None:
        try:
            self.libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
        except OSError:
            log.warning("libc.so.6 not found; malloc thresholds left at their defaults")
            self.libc = None
            return
        self.libc.mallinfo2.restype = _MallInfo2

    def tune(self) -> None:
        if self.libc is not None:
            m_trim_threshold, m_mmap_threshold = -1, -3
            self.libc.mallopt(m_trim_threshold, 128 * 1024 * 1024)
            self.libc.mallopt(m_mmap_threshold, 16 * 1024 * 1024)

    def free_bytes(self) -> int:
        return int(self.libc.mallinfo2().fordblks) if self.libc is not None else 0

    def check(self) -> None:
        if self.libc is not None and self.free_bytes() > self.GIVE_BACK:
            self.libc.malloc_trim(0)


class Worker:
    def __init__(
        self,
        config: Config,
        sockets: dict[str, socket.socket],
        heartbeat: mmap.mmap,
        slot: int,
        master_pid: int,
        span_paths: list[str],
        tls_store: tls.Store | None = None,
        shared: dict[str, Any] | None = None,
        channel: Channel | None = None,
    ):
        self.config = config
        self.shared = shared or {}  # the generation's shared state (middlewares.limits)
        self.span_paths = span_paths
        self.tls_store = tls_store  # this generation's certificates and contexts (the master's)
        self.sink: SpanSink | None = None
        self.log_sink: LogSink | None = None  # log.otlp
        self.metrics: WorkerMetrics | None = None
        self.access: Writer | None = None
        self.retries: dict[str, int] = defaultdict(int)
        self.entrypoint_names: list[str] = []
        self.ticks = 0
        self.sockets = sockets
        self.heartbeat = heartbeat
        self.slot = slot
        self.master_pid = master_pid
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.clock = Clock(time.monotonic())
        self.connections: set[Downstream] = set()
        self.heap = Heap()
        # the lines of exchanges that end in an error, sampled per kind (counted: errors)
        self.lines = logs.LineBudget(logging.getLogger("hopwire.proxy"))
        self.services: dict[str, Service] = {}
        self.service_keys: dict[str, Any] = {}  # name -> the settings its Service was made of
        self.runtimes: dict[str, list[EntryPointRuntime]] = {}  # plain, then TLS connections'
        self.tls_listeners: dict[str, TLSListener] = {}
        self.choosers: dict[str, Any] = {}  # TLS entrypoint -> its options-by-SNI chooser
        self.channel = channel  # live dynamic configuration from the master
        self.sequence = channel.sequence if channel is not None else 0  # the one we run
        # events counted in plain integers, folded into metrics once a second (and reset):
        # errors by kind (Exchange.end), and the telemetry writers' own problems
        self.errors: dict[str, int] = defaultdict(int)
        self.counters: dict[str, int] = defaultdict(int)
        self.tls_errors: dict[tuple[str, str], int] = defaultdict(int)  # (entrypoint, reason)
        self.middleware_errors: dict[tuple[str, str], int] = defaultdict(int)  # (name, reason)
        self.side_pools: list[Any] = []  # middlewares' own pools (forwardAuth), swept as others
        self.stopping = False  # /ping answers 503
        self.draining = False  # responses carry Connection: close; idle connections close
        self.drain_idle = DRAIN_IDLE
        self.servers: list[asyncio.AbstractServer] = []
        self.done: asyncio.Future[int] | None = None
        self.terms = 0

    # -- process ---------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGQUIT,
            signal.SIGHUP,
            signal.SIGUSR1,
            signal.SIGTTIN,
            signal.SIGTTOU,
            signal.SIGCHLD,
        ):
            signal.signal(sig, signal.SIG_DFL)
        log_cfg = self.config.log
        stack_dump_to(logs.setup(log_cfg.level, log_cfg.filePath, str(self.slot), log_cfg.format))
        if log_cfg.otlp is not None:  # the application log over OTLP too, sent every tick
            self.log_sink = LogSink(self.span_paths, APP_LOG, self.log_records_dropped)
            otlplogs.install(self.log_sink.add, f"worker-{self.slot}")
        random.seed()  # a forked child inherits its parent's generator: ids must differ
        metrics.process_started()
        self.heap.tune()
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            return loop.run_until_complete(self.main())
        finally:
            loop.close()

    async def main(self) -> int:
        try:
            await self.boot()
        except Exception:
            log.exception("worker %d failed to start", self.slot)
            return BOOT_ERROR
        loop = self.loop
        loop.add_signal_handler(signal.SIGTERM, self.on_term)
        loop.add_signal_handler(signal.SIGINT, self.on_int)
        loop.add_signal_handler(signal.SIGQUIT, self.on_int)
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # reloads are the master's
        self.done = loop.create_future()
        self.tick()
        log.info("worker %d serving %s", self.slot, ", ".join(sorted(self.sockets)))
        return await self.done

    async def boot(self) -> None:
        config = self.config
        self.services, self.service_keys = self.make_services(config, {})
        self.entrypoint_names = list(config.entryPoints)
        if config.tracing is not None and self.span_paths:
            self.sink = SpanSink(self.span_paths, self, config.tracing)
        prom = config.metrics.prometheus
        if (prom is not None or config.metrics.otlp is not None) and metrics.enabled():
            self.metrics = WorkerMetrics(config)
        if config.accessLog is not None:
            self.access = Writer(config.accessLog, self)
        tracing_internals = config.tracing is not None and config.tracing.addInternals
        metrics_internals = config.metrics.addInternals
        access_internals = config.accessLog is not None and config.accessLog.addInternals
        observing = self.observing(config)
        for ep_name, ep_cfg in config.entryPoints.items():
            ep_obs = ep_cfg.observability
            terminates = self.tls_store is not None and tls.entrypoint_tls(config, ep_name)
            ping = config.ping.entryPoint == ep_name
            runtime = EntryPointRuntime(ep_name, ep_cfg, RouteTable([]), ping, self)
            runtimes = [runtime]
            if terminates:  # its TLS connections' runtime: the same but its routes
                runtimes.append(
                    EntryPointRuntime(ep_name, ep_cfg, RouteTable([]), ping, self, tls=True)
                )
            internal = ep_name == INTERNAL_ENTRYPOINT
            runtime.unrouted_observers = observing.observers(
                ep_name,
                "",
                None,
                None,
                ep_obs,
                "https" if terminates else "http",
                only=(
                    not internal or tracing_internals,
                    not internal or metrics_internals,
                    not internal or access_internals,
                ),
            )
            runtime.internal_observers = observing.observers(
                ep_name,
                "",
                None,
                None,
                ep_obs,
                only=(tracing_internals, metrics_internals, access_internals),
            )
            if prom is not None and prom.entryPoint == ep_name:
                runtime.metrics_page = metrics.exposition
            for other in runtimes[1:]:
                other.unrouted_observers = runtime.unrouted_observers
                other.internal_observers = runtime.internal_observers
                other.metrics_page = runtime.metrics_page
            self.runtimes[ep_name] = runtimes
        self.install(config)
        for ep_name, runtimes in self.runtimes.items():
            sock = self.sockets[ep_name]
            if len(runtimes) == 1:
                server: Any = await self.loop.create_server(
                    functools.partial(Downstream, runtimes[0]), sock=sock, backlog=2048
                )
            else:
                server = self.tls_listeners[ep_name] = TLSListener(
                    self.loop,
                    sock,
                    functools.partial(Downstream, runtimes[0]),
                    functools.partial(Downstream, runtimes[1]),
                    self.choosers[ep_name],
                    runtimes[0].read_timeout,
                    functools.partial(self.handshake_failed, ep_name),
                )
            self.servers.append(server)
        if self.tls_store is not None and self.metrics is not None:
            self.metrics.certificates(self.tls_store.all_certificates())
        for service in self.services.values():
            service.start_checks()

    def make_services(
        self, config: Config, current: dict[str, Service]
    ) -> tuple[dict[str, Service], dict[str, Any]]:
        """The services of ``config`` and the settings each was made of; one whose settings
        (and transport's) are those of a running one is that one, with its pools and health
        state."""
        services: dict[str, Service] = {}
        keys: dict[str, Any] = {}
        contexts: dict[tuple[int, bool], ssl.SSLContext] = {}
        for name, svc in config.http.services.items():
            transport_name = svc.loadBalancer.serversTransport
            transport = (
                config.http.serversTransports[transport_name]
                if transport_name
                else config.serversTransport
            )
            keys[name] = key = (svc.loadBalancer, transport)
            old = current.get(name)
            if old is not None and self.service_keys.get(name) == key:
                services[name] = old
            else:
                services[name] = Service(name, svc.loadBalancer, transport, self.loop, contexts)
        return services, keys

    def install(self, config: Config) -> None:
        """Build every entrypoint's route tables from ``config`` (its routers, middlewares and
        the services already made), then swap them in: a request matched before keeps its old
        route, every one after gets the new."""
        user_eps = [n for n in config.entryPoints if n != INTERNAL_ENTRYPOINT]
        observing = self.observing(config)
        plans = []
        for ep_name, runtimes in self.runtimes.items():
            ep_cfg = config.entryPoints[ep_name]
            ep_obs = ep_cfg.observability
            found = tls.entrypoint_tls(config, ep_name) if len(runtimes) > 1 else None
            tls_routers = {name for name, _ in found[1]} if found is not None else set()
            routers: list[tuple[str, str, int, RouterTarget]] = []
            secure: list[tuple[str, str, int, RouterTarget]] = []  # the TLS routers
            for r_name, router in config.http.routers.items():
                if ep_name in (router.entryPoints or user_eps):
                    names = (*ep_cfg.http.middlewares, *router.middlewares)
                    details = observing.details(r_name, router, names, ep_obs)
                    observers = observing.observers(
                        ep_name,
                        r_name,
                        router.service,
                        router.observability,
                        ep_obs,
                        "https" if r_name in tls_routers else "http",
                        details,
                    )
                    tracer = (
                        observers[0] if observers and isinstance(observers[0], Tracer) else None
                    )
                    owners: list[int] = []
                    requests, response = compile_stages(
                        names, config.http.middlewares, self.shared, self, owners
                    )
                    if tracer is not None and tracer.details is not None:
                        requests = detailed_stages(requests, owners, tracer.details)
                    target = RouterTarget(
                        r_name, self.services[router.service], observers, requests, response
                    )
                    entry = (r_name, router.rule, router.priority, target)
                    (secure if r_name in tls_routers else routers).append(entry)
            redirect = ep_cfg.http.redirections.entryPoint
            if redirect is not None:
                routers.append(self.redirection(observing, ep_name, redirect, ep_obs))
            tables = [RouteTable(routers), RouteTable(secure)][: len(runtimes)]
            first = runtimes[0]
            groups = [first.unrouted_observers, first.internal_observers]
            groups += [target.observers for *_, target in routers + secure]
            # the tracer is first; what the request scan sets apart for it: the context its
            # propagators read (W3C, B3), nothing with "none"
            traced = int(any(g and isinstance(g[0], Tracer) for g in groups))
            if traced and config.tracing is not None:
                traced = propagated_fields(config.tracing.propagators)
            chooser = None
            if found is not None:
                assert self.tls_store is not None
                chooser = tls.chooser_for(config, self.tls_store, ep_name)
            plans.append((ep_name, runtimes, tables, traced, chooser))
        for ep_name, runtimes, tables, traced, chooser in plans:
            for runtime, table in zip(runtimes, tables, strict=True):
                runtime.table = table
                runtime.traced = traced
            if chooser is not None:
                self.choosers[ep_name] = chooser
                if ep_name in self.tls_listeners:
                    self.tls_listeners[ep_name].chooser = chooser

    def take_dynamic(self, sequence: int) -> None:
        """The master published dynamic configuration ``sequence``: swap it in."""
        assert self.channel is not None
        old_config, old_services, old_side = self.config, self.services, self.side_pools
        try:
            config = self.channel.read(sequence)
            self.config = config
            self.services, keys = self.make_services(config, old_services)
            self.side_pools = []
            self.install(config)
        except Exception:
            log.exception(
                "worker %d: dynamic configuration %d not applied; keeping the running one",
                self.slot,
                sequence,
            )
            self.config, self.services, self.side_pools = old_config, old_services, old_side
            self.counters["reload_failures"] += 1
            return
        self.service_keys = keys
        for name, service in old_services.items():
            if self.services.get(name) is not service:
                service.stop()  # idle connections close; in-flight ones close when done
        for pool in old_side:
            pool.retire()
        for name, service in self.services.items():
            if old_services.get(name) is not service:
                service.start_checks()
        log.info("worker %d: dynamic configuration %d applied", self.slot, sequence)

    def redirection(
        self, observing: Observing, ep_name: str, redirect: Any, ep_obs: Any
    ) -> tuple[Any, ...]:
        """The router of ``http.redirections.entryPoint``, as Traefik generates it."""
        to = redirect.to
        if to.startswith(":"):
            port = to[1:]
        else:
            port = str(parse_address(self.config.entryPoints[to].address)[1])
        name = f"{ep_name}-to-{to.lstrip(':')}@internal"
        answer = scheme_redirect(redirect.scheme, port, redirect.permanent, always=True)
        observers = observing.observers(ep_name, name, "noop@internal", None, ep_obs)
        target = RouterTarget(name, None, observers, (answer,))
        return (name, "HostRegexp(`^.+$`)", redirect.priority, target)

    def observing(self, config: Config) -> Observing:
        """What makes the observers of ``config``'s routers, with this worker's sinks."""
        return Observing(config, self.sink, self.metrics, self.access)

    def handshake_failed(self, ep_name: str, reason: str) -> None:
        self.tls_errors[(ep_name, reason)] += 1

    def log_records_dropped(self, records: int) -> None:
        self.counters["otlp_dropped_log"] += records

    def reopen_logs(self) -> None:
        logs.reopen()
        for handler in logging.getLogger().handlers:
            stack_dump_to(handler)  # the reopened file
        if self.access is not None:
            self.access.reopen()

    def tick(self) -> None:
        now = time.monotonic()
        self.clock.tick(now)
        HEARTBEAT.pack_into(self.heartbeat, 0, now)
        if os.getppid() != self.master_pid:
            log.error("master %d is gone; worker %d exits", self.master_pid, self.slot)
            self.finish(1)
            return
        for conn in list(self.connections):
            deadline = conn.deadline
            if deadline and deadline <= now:
                conn.timed_out()
            ex = conn.active
            covered = deadline
            if ex is not None:
                if ex.continue_at and ex.continue_at <= now:
                    ex.continue_now()
                covered = covered or ex.deadline
                if ex.deadline and ex.deadline <= now:
                    ex.timed_out()
            if covered:
                conn.stall_at = 0.0  # the stall bound starts afresh when no deadline covers it
            else:
                conn.watch(now)
        channel = self.channel
        if channel is not None and channel.current() != self.sequence:
            self.sequence = channel.current()
            self.take_dynamic(self.sequence)
        for service in self.services.values():
            for server in service.servers:
                server.pool.sweep(now)
        for pool in self.side_pools:
            pool.sweep(now)
        if self.sink is not None:
            self.sink.flush()
        if self.access is not None:
            self.access.flush()
        if self.log_sink is not None:
            self.log_sink.flush()
        self.ticks += 1
        if self.ticks % FOLD_TICKS == 0:
            self.heap.check()
            self.lines.flush(now)
            if self.metrics is not None:
                self.metrics.fold(self)
        self.loop.call_later(TICK, self.tick)

    # -- stopping --------------------------------------------------------------------------

    def on_term(self) -> None:
        self.terms += 1
        if self.terms > 1:
            log.info("worker %d: second SIGTERM, stopping now", self.slot)
            self.finish(0)
            return
        self.loop.create_task(self.graceful())

    def on_int(self) -> None:
        self.finish(0)

    def finish(self, code: int) -> None:
        """Close everything and end the loop; nothing that fails on the way out (a master
        gone with its metrics directory, say) may keep the worker from exiting."""
        try:
            for conn in list(self.connections):
                conn.close()
            for service in self.services.values():
                service.stop()
            if self.sink is not None:
                self.sink.flush()
            if self.metrics is not None:
                try:
                    self.metrics.fold(self)  # the last interval too: the master archives it
                except OSError as exc:
                    log.error("worker %d: last metrics not written: %s", self.slot, exc)
            if self.access is not None:
                self.access.flush()
            if self.log_sink is not None:
                self.log_sink.flush()
        finally:
            if self.done is not None and not self.done.done():
                self.done.set_result(code)

    async def graceful(self) -> None:
        eps = self.config.entryPoints.values()
        accept_grace = max(e.transport.lifeCycle.requestAcceptGraceTimeout for e in eps)
        grace = max(e.transport.lifeCycle.graceTimeOut for e in eps)
        self.stopping = True
        log.info(
            "worker %d stopping: accepting for %.3gs more, then draining for up to %.3gs",
            self.slot,
            accept_grace,
            grace,
        )
        if accept_grace:
            await asyncio.sleep(accept_grace)
        for server in self.servers:
            server.close()
        self.draining = True  # from now on every response carries Connection: close
        # Connections accepted just before the close may still have connection_made queued:
        # let the loop run it, or they would not be counted below and would be cut at exit.
        await asyncio.sleep(0.05)
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.active is None and conn.req is None:
                conn.deadline = min(conn.deadline or now + DRAIN_IDLE, now + DRAIN_IDLE)
        deadline = now + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.connections:
            log.warning(
                "worker %d: %d connection(s) still open after graceTimeOut; closing",
                self.slot,
                len(self.connections),
            )
        self.finish(0)


def run_worker(
    config: Config,
    sockets: dict[str, socket.socket],
    heartbeat: mmap.mmap,
    slot: int,
    master_pid: int,
    span_paths: list[str],
    tls_store: tls.Store | None = None,
    shared: dict[str, Any] | None = None,
    channel: Channel | None = None,
) -> int:
    worker = Worker(
        config, sockets, heartbeat, slot, master_pid, span_paths, tls_store, shared, channel
    )
    return worker.run()
