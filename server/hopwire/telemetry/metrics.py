"""Prometheus metrics that cost the request path almost nothing (DESIGN §3, issue 4).

prometheus-client in multiprocess mode costs ~2.4 µs per request for one counter and one
histogram even with bound children.  So the request path never touches it: a router's
``Meter`` adds plain integers into rows keyed by (status, method, protocol), one row table per
labelled family (entrypoint, router, service), and the worker's tick folds the rows into the
library's values once a second (``WorkerMetrics.fold``).  Labels are bounded by the config:
entrypoint, router and service names, the status code, a method from a fixed list
(anything else is ``OTHER``) and the protocol (``http`` or ``websocket``).

The multiprocess directory is created fresh by the master for this instance.  When a process
dies, the master folds its counter and histogram files into one archive file per type
(``archive``), dropping the series of routers, services and entrypoints the current config no
longer has, so respawns and reloads never make scrapes slower and removed series disappear.

prometheus_client is imported by ``init`` only, after PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import struct
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
REQ = ("code", "method", "protocol")
SCRAPE_ATTEMPTS = 5  # reads of the multiprocess files before a scrape gives up

_families: dict[str, Any] = {}
_prom: Any = None


def init(directory: str, buckets: tuple[float, ...]) -> None:
    """Set up multiprocess mode in ``directory`` and declare every family (master, pre-fork)."""
    global _prom
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    import prometheus_client as prom

    _prom = prom
    if _families:
        return
    counter, gauge, histogram = prom.Counter, prom.Gauge, prom.Histogram
    for scope, labels in (
        ("entrypoint", ("entrypoint",)),
        ("router", ("router", "service")),
        ("service", ("service",)),
    ):
        lbl = (*REQ, *labels)
        _families[f"{scope}_requests"] = counter(
            f"hopwire_{scope}_requests", f"Requests by {scope}.", lbl
        )
        _families[f"{scope}_duration"] = histogram(
            f"hopwire_{scope}_request_duration_seconds",
            f"Request duration by {scope}, in seconds (WebSocket sessions excluded).",
            lbl,
            buckets=buckets,
        )
        _families[f"{scope}_req_bytes"] = counter(
            f"hopwire_{scope}_requests_bytes", f"Request body bytes by {scope}.", lbl
        )
        _families[f"{scope}_resp_bytes"] = counter(
            f"hopwire_{scope}_responses_bytes", f"Response body bytes by {scope}.", lbl
        )
    _families["retries"] = counter("hopwire_service_retries", "Retries by service.", ("service",))
    _families["errors"] = counter(
        "hopwire_errors",
        "Exchanges that ended in an error, by kind (bad_request, client_closed, "
        "upstream_truncated...); each exactly once.",
        ("kind",),
    )
    _families["accesslog_errors"] = counter(
        "hopwire_accesslog_write_errors", "Failed writes of the access log."
    )
    _families["accesslog_dropped"] = counter(
        "hopwire_accesslog_lines_dropped",
        "Access-log lines dropped (write failed, or too many pending).",
    )
    _families["server_up"] = gauge(
        "hopwire_service_server_up",
        "1 when the server is in rotation (health checks), else 0.",
        ("service", "url"),
        multiprocess_mode="livemin",
    )
    _families["open"] = gauge(
        "hopwire_open_connections",
        "Open client connections.",
        ("entrypoint", "protocol"),
        multiprocess_mode="livesum",
    )
    _families["middleware_errors"] = counter(
        "hopwire_middleware_errors",
        "Middlewares that could not do their work (an authentication or error-page server "
        "unreachable, Redis down), by middleware and reason.",
        ("middleware", "reason"),
    )
    _families["tls_handshake_errors"] = counter(
        "hopwire_tls_handshake_errors",
        "Failed TLS handshakes (and connections refused before one), by reason.",
        ("entrypoint", "reason"),
    )
    _families["tls_not_after"] = gauge(
        "hopwire_tls_certs_not_after",
        "Unix time a loaded certificate expires (as Traefik's traefik_tls_certs_not_after).",
        ("cn", "sans", "serial"),
        multiprocess_mode="livemax",
    )
    _families["reloads"] = counter("hopwire_config_reloads", "Successful config reloads.")
    _families["reload_failures"] = counter(
        "hopwire_config_reloads_failure", "Rejected config reloads."
    )
    _families["last_reload"] = gauge(
        "hopwire_config_last_reload_success",
        "Unix time of the last successful (re)load.",
        multiprocess_mode="max",
    )
    _families["restarts"] = counter(
        "hopwire_process_restarts",
        "Workers and span exporters that died unexpectedly and were started again, by role.",
        ("role",),
    )
    _families["workers"] = gauge(
        "hopwire_workers", "Worker processes by state.", ("state",), multiprocess_mode="livesum"
    )
    _families["spans_exported"] = counter(
        "hopwire_tracing_spans_exported", "Spans accepted by the collector."
    )
    _families["spans_dropped"] = counter(
        "hopwire_tracing_spans_dropped", "Spans dropped (queue or socket full, export failed)."
    )
    _families["export_errors"] = counter("hopwire_tracing_export_errors", "Failed export requests.")
    _families["cpu"] = gauge(
        "hopwire_process_cpu_seconds",
        "CPU time of the process.",
        ("role",),
        multiprocess_mode="liveall",
    )
    _families["rss"] = gauge(
        "hopwire_process_resident_memory_bytes",
        "Resident memory.",
        ("role",),
        multiprocess_mode="liveall",
    )
    _families["fds"] = gauge(
        "hopwire_process_open_fds", "Open file descriptors.", ("role",), multiprocess_mode="liveall"
    )
    _families["started"] = gauge(
        "hopwire_process_start_time_seconds",
        "Unix time the process started.",
        ("role",),
        multiprocess_mode="liveall",
    )


def default_buckets() -> tuple[float, ...]:
    from hopwire.config import Prometheus

    return tuple(Prometheus().buckets)


def enabled() -> bool:
    return bool(_families)


def family(name: str) -> Any:
    return _families[name]


_PAGE = os.sysconf("SC_PAGE_SIZE")
_STARTED = time.time()


def process_sample(role: str) -> None:
    """Refresh this process's own gauges (called on a timer by every hopwire process)."""
    if not _families:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _families["cpu"].labels(role).set(usage.ru_utime + usage.ru_stime)
    try:
        with open("/proc/self/statm") as fh:
            _families["rss"].labels(role).set(int(fh.read().split()[1]) * _PAGE)
        _families["fds"].labels(role).set(len(os.listdir("/proc/self/fd")))
    except OSError:
        pass
    _families["started"].labels(role).set(_STARTED)


def process_started() -> None:
    global _STARTED
    _STARTED = time.time()


# ---------------------------------------------------------------------------------------------
# The request path: plain integers.


class Table:
    """Rows of one labelled family: (status, method, protocol) -> counts."""

    __slots__ = ("labels", "rows", "scope")

    def __init__(self, scope: str, labels: tuple[str, ...]):
        self.scope = scope
        self.labels = labels
        self.rows: dict[tuple[int, str, str], list[Any]] = {}


class Meter:
    """The metrics observer of a router (or of an entrypoint's unrouted requests).

    A request touches one row, the meter's own; the fold adds the meter's rows to each of its
    tables (entrypoint, router, service), once a second rather than once per request.
    """

    __slots__ = ("bounds", "nbuckets", "rows", "tables")

    def __init__(self, tables: list[Table], bounds: tuple[float, ...]):
        self.tables = tables
        self.bounds = bounds
        self.nbuckets = len(bounds) + 1
        self.rows: dict[tuple[int, str, str], list[Any]] = {}

    def start(self, ex: Any) -> None:
        ex.t0 = time.monotonic()

    def finish(self, ex: Any) -> None:
        duration = time.monotonic() - ex.t0
        status = ex.status
        if status == 101:
            key = (101, ex.method, "websocket")
            index = -1
        else:
            key = (status, ex.method, "http")
            index = bisect_left(self.bounds, duration)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, 0, 0.0, [0] * self.nbuckets]
        row[0] += 1
        row[1] += ex.req_bytes
        row[2] += ex.resp_bytes
        if index >= 0:
            row[3] += duration
            row[4][index] += 1

    def spill(self) -> None:
        """Add the rows counted since the last fold to the tables."""
        rows, self.rows = self.rows, {}
        for table in self.tables:
            into = table.rows
            for key, (count, req, resp, total, buckets) in rows.items():
                row = into.get(key)
                if row is None:
                    into[key] = [count, req, resp, total, list(buckets)]
                else:
                    row[0] += count
                    row[1] += req
                    row[2] += resp
                    row[3] += total
                    row[4] = [a + b for a, b in zip(row[4], buckets, strict=True)]


class WorkerMetrics:
    """A worker's tables and the once-a-second fold into prometheus_client."""

    def __init__(self, config: Any):
        prom = config.metrics.prometheus
        self.bounds = tuple(prom.buckets)
        self.cfg = prom
        self.tables: dict[tuple[str, tuple[str, ...]], Table] = {}
        # one meter per (entrypoint, router, service), kept across configuration generations
        self.meters: dict[tuple[str, str | None, str | None], Meter] = {}
        self.children: dict[tuple[str, tuple[Any, ...]], Any] = {}
        self.counters: dict[str, int] = {}

    def table(self, scope: str, labels: tuple[str, ...]) -> Table:
        key = (scope, labels)
        t = self.tables.get(key)
        if t is None:
            t = self.tables[key] = Table(scope, labels)
        return t

    def certificates(self, certs: list[Any]) -> None:
        """The expiry of every certificate this generation serves (tls.Certificate)."""
        for cert in certs:
            labels = (cert.cn, ",".join(cert.sans), cert.serial)
            self._child("tls_not_after", labels).set(cert.not_after)

    def meter(self, entrypoint: str, router: str | None, service: str | None) -> Meter:
        meter = self.meters.get((entrypoint, router, service))
        if meter is None:
            meter = self.meters[(entrypoint, router, service)] = self._meter(
                entrypoint, router, service
            )
        return meter

    def _meter(self, entrypoint: str, router: str | None, service: str | None) -> Meter:
        cfg = self.cfg
        tables = []
        if cfg.addEntryPointsLabels:
            tables.append(self.table("entrypoint", (entrypoint,)))
        if router is not None and service is not None:
            if cfg.addRoutersLabels:
                tables.append(self.table("router", (router, service)))
            if cfg.addServicesLabels:
                tables.append(self.table("service", (service,)))
        return Meter(tables, self.bounds)

    def _child(self, name: str, labels: tuple[Any, ...]) -> Any:
        child = self.children.get((name, labels))
        if child is None:
            child = self.children[(name, labels)] = _families[name].labels(*labels)
        return child

    def fold(self, worker: Any) -> None:
        """Move the counts of the last interval into the library's (mmap-backed) values."""
        for meter in self.meters.values():
            if meter.rows:
                meter.spill()
        for table in self.tables.values():
            if not table.rows:
                continue
            rows, table.rows = table.rows, {}
            scope = table.scope
            for (status, method, protocol), (count, req, resp, total, buckets) in rows.items():
                labels = (
                    str(status),
                    method if method in METHODS else "OTHER",
                    protocol,
                    *table.labels,
                )
                self._child(f"{scope}_requests", labels).inc(count)
                if req:
                    self._child(f"{scope}_req_bytes", labels).inc(req)
                if resp:
                    self._child(f"{scope}_resp_bytes", labels).inc(resp)
                if protocol == "http":
                    # prometheus_client keeps per-bucket counts and the sum as values; adding
                    # to them is what observe() does one observation at a time
                    hist = self._child(f"{scope}_duration", labels)
                    for i, n in enumerate(buckets):
                        if n:
                            hist._buckets[i].inc(n)
                    hist._sum.inc(total)
        counters = worker.counters
        # a worker that could not apply a dynamic configuration counts a rejected reload
        for name in ("spans_dropped", "accesslog_errors", "accesslog_dropped", "reload_failures"):
            delta = counters.get(name, 0) - self.counters.get(name, 0)
            if delta:
                _families[name].inc(delta)
                self.counters[name] = counters[name]
        for kind, count in list(worker.errors.items()):
            if count:
                self._child("errors", (kind,)).inc(count)
                worker.errors[kind] = 0
        for service, count in list(worker.retries.items()):
            if count:
                self._child("retries", (service,)).inc(count)
                worker.retries[service] = 0
        for labels, count in list(worker.middleware_errors.items()):
            if count:
                self._child("middleware_errors", labels).inc(count)
                worker.middleware_errors[labels] = 0
        for labels, count in list(worker.tls_errors.items()):
            if count:
                self._child("tls_handshake_errors", labels).inc(count)
                worker.tls_errors[labels] = 0
        for service in worker.services.values():
            for server in service.servers:
                self._child("server_up", (service.name, server.url)).set(1 if server.healthy else 0)
        open_by: dict[tuple[str, str], int] = {}
        for ep in worker.entrypoint_names:
            open_by[(ep, "http")] = 0
            open_by[(ep, "websocket")] = 0
        for conn in worker.connections:
            key = (conn.ep.name, "websocket" if conn.tunnel is not None else "http")
            open_by[key] = open_by.get(key, 0) + 1
        for labels, count in open_by.items():
            self._child("open", labels).set(count)
        process_sample("worker")


class _Files:
    """prometheus_client's multiprocess collector over the files that can be read: a file a
    process has just created is empty until its header is written, and would fail the scrape."""

    def __init__(self, directory: str, multiprocess: Any):
        self.directory = directory
        self.merge = multiprocess.MultiProcessCollector.merge

    def collect(self) -> Any:
        files = []
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            try:
                if os.path.getsize(path) >= 8:  # the used-bytes header and its padding
                    files.append(path)
            except OSError:
                pass  # archived meanwhile
        return self.merge(files, accumulate=True)


def exposition(accept: bytes) -> tuple[bytes, bytes]:
    """(body, content type) of a scrape: OpenMetrics when the Accept header asks for it."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    registry.register(_Files(os.environ["PROMETHEUS_MULTIPROC_DIR"], multiprocess))
    if b"application/openmetrics-text" in accept:
        from prometheus_client.openmetrics import exposition as om

        generate, content_type = om.generate_latest, om.CONTENT_TYPE_LATEST
    else:
        generate, content_type = _prom.generate_latest, _prom.CONTENT_TYPE_LATEST
    for _ in range(SCRAPE_ATTEMPTS - 1):
        try:
            return generate(registry), content_type.encode()
        except (OSError, RuntimeError, struct.error):
            pass  # a file vanished (a dead process archived) or grew while being read: again
    return generate(registry), content_type.encode()


# ---------------------------------------------------------------------------------------------
# The master: archive what dead processes counted.


def _entries(path: str) -> list[tuple[str, float, float]]:
    """(key, value, timestamp) of every entry of a prometheus_client mmap file.

    This reads the library's file format (pinned in pyproject.toml): the key is the JSON
    ``[metric_name, name, labels, help]`` and the reader yields (key, value, timestamp, pos)
    in the pinned versions; only the first three are used.
    """
    from prometheus_client.mmap_dict import MmapedDict

    if os.path.getsize(path) < 8:
        return []  # created by a process killed before it wrote the header: nothing in it
    return [(e[0], e[1], e[2]) for e in MmapedDict.read_all_values_from_file(path)]


def archive(directory: str, pid: int, keep: Callable[[dict[str, str]], bool]) -> None:
    """Fold a dead process's counters and histograms into the archive files."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    for typ in ("counter", "histogram"):
        source = os.path.join(directory, f"{typ}_{pid}.db")
        if not os.path.exists(source):
            continue
        target = MmapedDict(os.path.join(directory, f"{typ}_archive.db"))
        try:
            for key, value, timestamp in _entries(source):
                if keep(json.loads(key)[2]):
                    old, _ = target.read_value(key)
                    target.write_value(key, old + value, timestamp)
        finally:
            target.close()
        os.remove(source)
    multiprocess.mark_process_dead(pid, directory)
    # gauges of the other modes (max, min, all...) would pile up one file per dead process;
    # the values they hold are owned by the master, which keeps setting them
    for path in glob.glob(os.path.join(directory, f"gauge_*_{pid}.db")):
        os.remove(path)


def compact(directory: str, keep: Callable[[dict[str, str]], bool]) -> None:
    """Drop archived series the current config no longer has (after a reload)."""
    from prometheus_client.mmap_dict import MmapedDict

    for typ in ("counter", "histogram"):
        path = os.path.join(directory, f"{typ}_archive.db")
        if not os.path.exists(path):
            continue
        values = [(k, v, t) for k, v, t in _entries(path) if keep(json.loads(k)[2])]
        tmp = path + ".new"
        target = MmapedDict(tmp)
        for key, value, timestamp in values:
            target.write_value(key, value, timestamp)
        target.close()
        # the collector globs *.db: the temporary name is never read half-written
        os.replace(tmp, path)


def keeper(config: Any) -> Callable[[dict[str, str]], bool]:
    """Which archived series survive: those naming only current routers/services/entrypoints."""
    # "" stands for a series without that label
    routers = {"", *config.http.routers}
    services = {"", *config.http.services}
    entrypoints = {"", *config.entryPoints}

    def keep(labels: dict[str, str]) -> bool:
        return (
            labels.get("router", "") in routers
            and labels.get("service", "") in services
            and labels.get("entrypoint", "") in entrypoints
        )

    return keep
