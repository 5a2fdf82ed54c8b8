"""Prometheus metrics that cost the request path almost nothing (DESIGN §3, issue 4).

prometheus-client in multiprocess mode costs ~2.4 µs per request for one counter and one
histogram even with bound children.  So the request path never touches it: a router's
``Meter`` adds plain integers into rows keyed by (status, method, protocol), one row table per
labelled family (entrypoint, router, service), and the worker's tick folds the rows into the
library's values once a second (``WorkerMetrics.fold``).  Labels are bounded by the config:
entrypoint, router and service names, the status code, a method from a fixed list
(anything else is ``OTHER``) and the protocol (``http``, ``websocket``, or ``grpc``: a gRPC
call, counted with its gRPC status as the code, as Traefik counts it).

The multiprocess directory is created fresh by the master for this instance.  When a process
dies, the master folds its counter and histogram files into one archive file per type
(``archive``), dropping the series of routers, services and entrypoints the current config no
longer has, so respawns and reloads never make scrapes slower and removed series disappear.

prometheus_client is imported by ``init`` only, after PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import resource
import struct
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from hopwire.contracts import ExchangeView, WorkerState
from hopwire.telemetry import _meter

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
REQ = ("code", "method", "protocol")
# hopwire.http.h2's counters (worker.counters["h2_" + kind])
HTTP2_REFUSED = (
    "connection_error",
    "invalid_field",
    "invalid_frame",
    "oversized_head",
    "client_reset",
    "rapid_reset",
)
SCRAPE_ATTEMPTS = 5  # reads of the multiprocess files before a scrape gives up

_families: dict[str, Any] = {}
# each histogram family as declared: (its exported name, label names, bucket bounds); what
# the exemplars are written with, so that nothing reads the library's own attributes for it
_histograms: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {}
_prom: Any = None


OTLP = "otlp:"  # prefix of the families kept for the OTLP push only (never on /metrics)
SERVER_LABELS = ("method", "scheme", "code", "error_type", "version", "route")
CLIENT_LABELS = ("method", "address", "port", "scheme", "code", "error_type")


def init(directory: str, buckets: tuple[float, ...], otlp_bounds: tuple[float, ...] = ()) -> None:
    """Set up multiprocess mode in ``directory`` and declare every family (master, pre-fork).

    The request families exist twice: as Prometheus has them (its buckets and label
    switches) and, prefixed ``otlp:``, as ``metrics.otlp`` has them (its boundaries and
    switches), with the semantic-convention histograms beside them.  The workers write the
    second set only when ``metrics.otlp`` is on; the exporter reads it, /metrics never."""
    global _prom
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    import prometheus_client as prom

    _prom = prom
    if _families:
        return
    counter, gauge = prom.Counter, prom.Gauge

    def histogram(
        key: str, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        _families[key] = prom.Histogram(name, doc, labels, buckets=buckets)
        bounds = tuple(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds += (float("inf"),)  # as the library adds it
        _histograms[key] = (name, tuple(labels), bounds)

    for prefix, key, bounds in (
        ("", "", buckets),
        (OTLP, OTLP, otlp_bounds or default_otlp_bounds()),
    ):
        for scope, labels in (
            ("entrypoint", ("entrypoint",)),
            ("router", ("router", "service")),
            ("service", ("service",)),
        ):
            lbl = (*REQ, *labels)
            _families[f"{key}{scope}_requests"] = counter(
                f"{prefix}hopwire_{scope}_requests", f"Requests by {scope}.", lbl
            )
            histogram(
                f"{key}{scope}_duration",
                f"{prefix}hopwire_{scope}_request_duration_seconds",
                f"Request duration by {scope}, in seconds (WebSocket sessions excluded).",
                lbl,
                buckets=bounds,
            )
            _families[f"{key}{scope}_req_bytes"] = counter(
                f"{prefix}hopwire_{scope}_requests_bytes", f"Request body bytes by {scope}.", lbl
            )
            _families[f"{key}{scope}_resp_bytes"] = counter(
                f"{prefix}hopwire_{scope}_responses_bytes", f"Response body bytes by {scope}.", lbl
            )
    histogram(
        "server_duration",
        f"{OTLP}http_server_request_duration",
        "Duration of HTTP server requests.",
        SERVER_LABELS,
        buckets=otlp_bounds or default_otlp_bounds(),
    )
    histogram(
        "client_duration",
        f"{OTLP}http_client_request_duration",
        "Duration of HTTP client requests.",
        CLIENT_LABELS,
        buckets=otlp_bounds or default_otlp_bounds(),
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
        "Workers, span exporters and Kubernetes providers that died unexpectedly and were "
        "started again, by role.",
        ("role",),
    )
    _families["provider_rejected"] = counter(
        "hopwire_provider_rejected_objects",
        "Objects a Kubernetes provider could not serve (each logged with why), by provider; "
        "counted once per object and reason.",
        ("provider",),
    )
    _families["provider_api_errors"] = counter(
        "hopwire_provider_api_errors",
        "Failed requests of a Kubernetes provider to the API server, by provider.",
        ("provider",),
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
    _families["requests_kept"] = counter(
        "hopwire_tracing_requests_kept",
        "Unsampled requests whose spans were exported after the fact (tracing.keep), by why.",
        ("reason",),
    )
    _families["otlp_exported"] = counter(
        "hopwire_otlp_exported",
        "Metric data points and log records accepted by the collector, by signal.",
        ("signal",),
    )
    _families["otlp_dropped"] = counter(
        "hopwire_otlp_dropped",
        "Metric data points and log records dropped (socket or queue full, export failed), "
        "by signal.",
        ("signal",),
    )
    _families["otlp_export_errors"] = counter(
        "hopwire_otlp_export_errors",
        "Failed OTLP export requests of metrics and logs.",
        ("signal",),
    )
    _families["http2_refused"] = counter(
        "hopwire_http2_refused",
        "What HTTP/2 clients sent that was refused, by kind: connection_error (GOAWAY), "
        "invalid_field (RFC 9113 §8.2: stream reset), invalid_frame, oversized_head, "
        "client_reset (streams the client reset), rapid_reset (connections ended for resetting "
        "streams faster than they were answered).",
        ("kind",),
    )
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


def default_otlp_bounds() -> tuple[float, ...]:
    from hopwire.config import MetricsOTLP

    return tuple(MetricsOTLP().explicitBoundaries)


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


def add_observations(hist: Any, counts: Any, total: float) -> None:
    """Add a fold's observations to a prometheus_client Histogram child at once: ``counts``
    per bucket and their ``total``.  The library's public ``observe()`` takes one observation
    at a time (tens of thousands of calls a second here); its per-bucket and sum values are
    reached here, and only here, checked on the first use, for the versions pyproject.toml
    allows."""
    buckets, value_sum = getattr(hist, "_buckets", None), getattr(hist, "_sum", None)
    if buckets is None or value_sum is None:
        raise RuntimeError(
            "prometheus_client changed its Histogram (no _buckets/_sum): hopwire's metrics "
            "fold needs a version that pyproject.toml allows"
        )
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    value_sum.inc(total)


class Table:
    """Rows of one labelled family: (status, method, protocol[, ...]) -> counts, written at
    the fold into the families of each of ``prefixes`` ("" for Prometheus, OTLP)."""

    __slots__ = ("labels", "prefixes", "rows", "scope")

    def __init__(self, scope: str, labels: tuple[str, ...]):
        self.scope = scope
        self.labels = labels
        self.prefixes: list[str] = []
        self.rows: dict[tuple[Any, ...], list[Any]] = {}


def _add_row(into: dict[Any, list[Any]], key: Any, row: list[Any]) -> None:
    """A row is [count, request bytes, response bytes, duration sum, bucket counts,
    exemplars (None, or per bucket None or (trace id, span id, seconds, unix time))]."""
    count, req, resp, total, buckets, exemplars = row[:6]
    mine = into.get(key)
    if mine is None:
        into[key] = [count, req, resp, total, list(buckets), exemplars and list(exemplars)]
    else:
        mine[0] += count
        mine[1] += req
        mine[2] += resp
        mine[3] += total
        mine[4] = [a + b for a, b in zip(mine[4], buckets, strict=True)]
        if exemplars:
            mine[5] = _newest(mine[5], exemplars)


def _newest(a: list[Any] | None, b: list[Any]) -> list[Any]:
    if a is None:
        return list(b)
    return [
        y if y is not None and (x is None or y[2] >= x[2]) else x for x, y in zip(a, b, strict=True)
    ]


def _exemplar(row: list[Any], index: int, trace: Any, seconds: float, ended: float) -> None:
    """A sampled request kept for its bucket (the last one of the interval): its trace, its
    duration and its end (monotonic); the fold reads the ids from the trace (``_histogram``),
    once per bucket rather than once per request."""
    exemplars = row[5]
    if exemplars is None:
        exemplars = row[5] = [None] * len(row[4])
    exemplars[index] = (trace, seconds, ended)


class PyMeter:
    """The metrics observer's per-request part, in Python: the reference of the compiled
    ``_meter.Meter`` (``Meter`` below), which the worker runs; tests/unit/test_compiled_meter.py
    proves the two make the same rows.

    A request touches one row, the meter's own, keyed by (status, method, protocol); the fold
    adds the meter's rows to each of its tables (entrypoint, router, service), once a second
    rather than once per request.  ``rich`` (``metrics.otlp`` on): the row key also has the
    error type and HTTP/1.0 when the request has them (rare), and the row counts the request's
    backend attempt per server for ``http.client.request.duration``.
    """

    __slots__ = (
        "bounds",
        "keep",
        "keep_errors",
        "keep_slower",
        "nbuckets",
        "rich",
        "route",
        "rows",
        "scheme",
        "tables",
    )

    def __init__(
        self,
        tables: list[Table],
        bounds: tuple[float, ...],
        rich: bool = False,
        route: str = "",
        scheme: str = "http",
    ):
        self.tables = tables
        self.bounds = bounds
        self.nbuckets = len(bounds) + 1
        self.rich = rich
        self.route = route
        self.scheme = scheme
        self.rows: dict[tuple[Any, ...], list[Any]] = {}
        self.keep: Any = None
        self.keep_errors = False
        self.keep_slower = 0.0

    def keeping(self, keep: Any, errors: bool, slower: float) -> None:
        """tracing.keep: end an unsampled exchange as the tracer's Keeper would, handing a
        failed (5xx, an error kind) or slow one to ``keep(ex)``; the meter reads the trace,
        status and duration anyway, where a Keeper among the observers is one more call."""
        self.keep, self.keep_errors, self.keep_slower = keep, errors, slower

    def start(self, ex: ExchangeView) -> None:
        """The exchange keeps its start (t0) and end (t1) times when observed; rich, it also
        notes when its backend attempt starts (origin_t0)."""
        if self.rich:
            ex.timed = 1

    def finish(self, ex: ExchangeView) -> None:
        t1 = ex.t1
        duration = t1 - ex.t0
        status = ex.status
        if status == 101:
            key: tuple[Any, ...] = (101, ex.method, "websocket")
            index = -1
        else:
            grpc = getattr(ex, "grpc", None)  # set on gRPC calls only
            # rich: network.protocol.version, "1.0" for an HTTP/1.0 request, else its
            # connection's ("1.1", or "2" for an HTTP/2 stream)
            version = ("1.0" if ex.http10 else ex.down.version) if self.rich else "1.1"
            if grpc is not None:  # a gRPC call: its gRPC status as the code (Traefik's)
                if self.rich:  # and its HTTP status last, for the OTLP histogram
                    key = (grpc, ex.method, "grpc", ex.error_type, version, status)
                else:
                    key = (grpc, ex.method, "grpc")
            elif self.rich and (ex.error_type or version != "1.1"):
                key = (status, ex.method, "http", ex.error_type, version)
            else:
                key = (status, ex.method, "http")
            index = bisect_left(self.bounds, duration)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, 0, 0.0, [0] * self.nbuckets, None]
            if self.rich:  # the backend attempts of its requests: server -> [sum, counts]
                row.append({})
        row[0] += 1
        row[1] += ex.req_bytes
        row[2] += ex.resp_bytes
        if index >= 0:
            row[3] += duration
            row[4][index] += 1
            trace = ex.trace
            if trace is not None and trace.sampled:
                _exemplar(row, index, trace, duration, t1)
            if self.rich and ex.attempts:
                # the attempt ends with the exchange (the response was relayed as it came);
                # keyed by the server, and its status only when it is not the exchange's
                origin = ex.origin_status
                ckey = ex.server if origin == status else (ex.server, origin)
                seconds = t1 - ex.origin_t0
                entry = row[6].get(ckey)
                if entry is None:
                    entry = row[6][ckey] = [0.0, [0] * self.nbuckets]
                entry[0] += seconds
                entry[1][bisect_left(self.bounds, seconds)] += 1
        if self.keep is not None:  # None: keeping off (keeping(None, ...))
            trace = ex.trace
            if trace is not None and not trace.sampled:
                failed = self.keep_errors and (status >= 500 or bool(ex.error_type))
                if failed or (self.keep_slower > 0 and duration > self.keep_slower):
                    self.keep(ex)

    def take(self) -> dict[tuple[Any, ...], list[Any]]:
        """The rows since the last fold; the meter starts new ones."""
        rows, self.rows = self.rows, {}
        return rows

    def snapshot(self) -> dict[tuple[Any, ...], list[Any]]:
        return self.rows


def spill(meter: Any, semconv: dict[Any, list[Any]], clients: dict[Any, list[Any]]) -> None:
    """Add a meter's rows counted since the last fold to its tables and, rich, to the
    semantic-convention tables (``semconv``: the server histogram, ``clients``: the client
    one)."""
    rows = meter.take()
    if not rows:
        return
    if meter.rich:
        route, scheme = meter.route, meter.scheme
        for key, row in rows.items():
            protocol = key[2]
            if protocol == "websocket":
                continue
            status, method = (key[5] if protocol == "grpc" else key[0]), key[1]
            error, version = (key[3], key[4]) if len(key) > 3 else ("", "1.1")
            _add_row(semconv, (route, scheme, status, method, error, version), row)
            for ckey, (total, buckets) in row[6].items():
                server, origin = ckey if isinstance(ckey, tuple) else (ckey, status)
                crow = [sum(buckets), 0, 0, total, buckets, None]
                _add_row(clients, (method, server.pool, origin, error), crow)
    for table in meter.tables:
        into = table.rows
        for key, row in rows.items():
            _add_row(into, key, row)


class Meter(_meter.Meter):
    """The metrics observer of a router (or of an entrypoint's unrouted requests): ``PyMeter``
    compiled (no Python frame at each end of a request; a row's counts are C numbers, turned
    into ``PyMeter``'s lists by ``take`` at the fold)."""

    __slots__ = ()

    def spill(self, semconv: dict[Any, list[Any]], clients: dict[Any, list[Any]]) -> None:
        spill(self, semconv, clients)


def _layout(union: tuple[float, ...], bounds: tuple[float, ...]) -> list[int]:
    """Index in ``bounds``' buckets of each bucket of ``union`` (a superset of the bounds):
    a duration in a bucket of the union lies in exactly that bucket of the coarser layout."""
    return [bisect_left(bounds, b) for b in union] + [len(bounds)]


def _regroup(counts: list[int], layout: list[int] | None, size: int) -> list[int]:
    if layout is None:
        return counts
    out = [0] * size
    for i, n in enumerate(counts):
        if n:
            out[layout[i]] += n
    return out


def _server_error(status: int, error_type: str) -> str:
    return error_type or (str(status) if status >= 500 else "")


def _client_error(status: int, error_type: str) -> str:
    if status == 0:
        return error_type or "no_response"
    return str(status) if status >= 400 else ""


class WorkerMetrics:
    """A worker's tables and the once-a-second fold into prometheus_client."""

    def __init__(self, config: Any):
        prom = config.metrics.prometheus
        otlp = config.metrics.otlp
        self.prom = prom
        self.otlp = otlp
        prom_bounds = tuple(prom.buckets) if prom is not None else ()
        otlp_bounds = tuple(otlp.explicitBoundaries) if otlp is not None else ()
        # the request path counts in the union of the two layouts; the fold regroups
        self.bounds = tuple(sorted(set(prom_bounds) | set(otlp_bounds)))
        self.layouts: dict[str, tuple[list[int] | None, int]] = {}
        for prefix, bounds in (("", prom_bounds), (OTLP, otlp_bounds)):
            layout = None if bounds == self.bounds else _layout(self.bounds, bounds)
            self.layouts[prefix] = (layout, len(bounds) + 1)
        self.tables: dict[tuple[str, tuple[str, ...]], Table] = {}
        # one meter per (entrypoint, router, service), kept across configuration generations
        self.meters: dict[tuple[str, str | None, str | None, str], Meter] = {}
        self.children: dict[tuple[str, tuple[Any, ...]], Any] = {}
        self.counters: dict[str, int] = {}
        # (family, labels, bucket) -> (trace id, span id, seconds, unix time)
        self.exemplars: dict[tuple[str, tuple[Any, ...], int], tuple[Any, ...]] = {}
        self.exemplars_changed = False

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

    def meter(
        self, entrypoint: str, router: str | None, service: str | None, scheme: str = "http"
    ) -> Meter:
        key = (entrypoint, router, service, scheme)
        meter = self.meters.get(key)
        if meter is None:
            meter = self.meters[key] = self._meter(entrypoint, router, service, scheme)
        return meter

    def _meter(
        self, entrypoint: str, router: str | None, service: str | None, scheme: str
    ) -> Meter:
        tables: dict[tuple[str, tuple[str, ...]], Table] = {}
        for prefix, cfg in (("", self.prom), (OTLP, self.otlp)):
            if cfg is None:
                continue
            wanted: list[tuple[str, tuple[str, ...]]] = []
            if cfg.addEntryPointsLabels:
                wanted.append(("entrypoint", (entrypoint,)))
            if router is not None and service is not None:
                if cfg.addRoutersLabels:
                    wanted.append(("router", (router, service)))
                if cfg.addServicesLabels:
                    wanted.append(("service", (service,)))
            for scope, labels in wanted:
                table = self.table(scope, labels)
                if prefix not in table.prefixes:
                    table.prefixes.append(prefix)
                tables[(scope, labels)] = table
        return Meter(
            list(tables.values()), self.bounds, self.otlp is not None, router or "", scheme
        )

    def _child(self, name: str, labels: tuple[Any, ...]) -> Any:
        child = self.children.get((name, labels))
        if child is None:
            child = self.children[(name, labels)] = _families[name].labels(*labels)
        return child

    def _histogram(
        self,
        name: str,
        labels: tuple[Any, ...],
        row: list[Any],
        layout: list[int] | None,
        size: int,
    ) -> None:
        add_observations(self._child(name, labels), _regroup(row[4], layout, size), row[3])
        exemplars = row[5]
        if exemplars:
            wall = time.time() - time.monotonic()
            for i, exemplar in enumerate(exemplars):
                if exemplar is not None:
                    key = (name, labels, layout[i] if layout is not None else i)
                    trace, seconds, ended = exemplar
                    self.exemplars[key] = (
                        trace.tid_hex.decode(),
                        trace.span_hex.decode(),
                        seconds,
                        ended + wall,
                    )
                    self.exemplars_changed = True

    def write_exemplars(self) -> None:
        """This worker's exemplars (the newest per series and bucket) to its file in the
        metrics directory, for the scrape and the OTLP push (prometheus_client's
        multiprocess mode keeps none); once a fold, when there is a new one."""
        if not self.exemplars_changed:
            return
        self.exemplars_changed = False
        from prometheus_client.utils import floatToGoString

        out = []
        for (name, labels, index), (trace, span, value, when) in self.exemplars.items():
            exported, label_names, bounds = _histograms[name]
            le = floatToGoString(bounds[index])
            names = dict(zip(label_names, labels, strict=True))
            out.append([exported, names, le, trace, span, value, when])
        path = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"exemplars_{os.getpid()}.json")
        with open(path + ".new", "wb") as fh:
            fh.write(json.dumps(out).encode())
        os.replace(path + ".new", path)

    def fold(self, worker: WorkerState) -> None:
        """Move the counts of the last interval into the library's (mmap-backed) values."""
        semconv: dict[Any, list[Any]] = {}
        clients: dict[Any, list[Any]] = {}
        for meter in self.meters.values():
            meter.spill(semconv, clients)
        layouts = self.layouts
        for table in self.tables.values():
            if not table.rows:
                continue
            rows, table.rows = table.rows, {}
            scope = table.scope
            for key, row in rows.items():
                count, req, resp = row[0], row[1], row[2]
                status, method, protocol = key[:3]
                labels = (
                    str(status),
                    method if method in METHODS else "OTHER",
                    protocol,
                    *table.labels,
                )
                for prefix in table.prefixes:
                    # every series exists from its first request, 0 bytes or not (Traefik's)
                    self._child(f"{prefix}{scope}_requests", labels).inc(count)
                    self._child(f"{prefix}{scope}_req_bytes", labels).inc(req)
                    self._child(f"{prefix}{scope}_resp_bytes", labels).inc(resp)
                    if protocol != "websocket":
                        layout, size = layouts[prefix]
                        self._histogram(f"{prefix}{scope}_duration", labels, row, layout, size)
        layout, size = layouts[OTLP]
        for (route, scheme, status, method, error, version), row in semconv.items():
            labels = (
                method if method in METHODS else "_OTHER",
                scheme,
                str(status),
                _server_error(status, error),
                version,
                route,
            )
            self._histogram("server_duration", labels, row, layout, size)
        for (method, pool, status, error), row in clients.items():
            labels = (
                method if method in METHODS else "_OTHER",
                pool.host,
                str(pool.port),
                "http" if pool.ssl is None else "https",
                str(status) if status else "",
                _client_error(status, error),
            )
            self._histogram("client_duration", labels, row, layout, size)
        self.write_exemplars()
        self.fold_events(worker)

    def fold_events(self, worker: WorkerState) -> None:
        """The worker's event counters and gauges (not per request)."""
        counters = worker.counters
        # a worker that could not apply a dynamic configuration counts a rejected reload
        for name in ("spans_dropped", "accesslog_errors", "accesslog_dropped", "reload_failures"):
            delta = counters.get(name, 0) - self.counters.get(name, 0)
            if delta:
                _families[name].inc(delta)
                self.counters[name] = counters[name]
        for reason in ("error", "slow"):
            name = f"kept_{reason}"
            delta = counters.get(name, 0) - self.counters.get(name, 0)
            if delta:
                self._child("requests_kept", (reason,)).inc(delta)
                self.counters[name] = counters[name]
        for kind in HTTP2_REFUSED:
            name = f"h2_{kind}"
            delta = counters.get(name, 0) - self.counters.get(name, 0)
            if delta:
                self._child("http2_refused", (kind,)).inc(delta)
                self.counters[name] = counters[name]
        for signal in ("accesslog", "log"):
            name = f"otlp_dropped_{signal}"
            delta = counters.get(name, 0) - self.counters.get(name, 0)
            if delta:
                self._child("otlp_dropped", (signal,)).inc(delta)
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

    def __init__(
        self, directory: str, multiprocess: Any, otlp: bool = False, exemplars: bool = False
    ):
        self.directory = directory
        self.merge = multiprocess.MultiProcessCollector.merge
        self.otlp = otlp  # False: the ``otlp:`` families are left out (a scrape)
        self.exemplars = exemplars  # the histogram buckets carry them (OpenMetrics)

    def collect(self) -> Any:
        files = []
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            try:
                if os.path.getsize(path) >= 8:  # the used-bytes header and its padding
                    files.append(path)
            except OSError:
                pass  # archived meanwhile
        merged = self.merge(files, accumulate=True)
        if not self.otlp:
            merged = [m for m in merged if not m.name.startswith(OTLP)]
        if self.exemplars:
            with_exemplars(merged, exemplars(self.directory))
        return merged


def exemplars(directory: str) -> dict[tuple[str, tuple[Any, ...], str], tuple[Any, ...]]:
    """Every process's exemplars, the newest per (family, labels, le): (trace id, span id,
    seconds, unix time)."""
    found: dict[tuple[str, tuple[Any, ...], str], tuple[Any, ...]] = {}
    for path in glob.glob(os.path.join(directory, "exemplars_*.json")):
        try:
            with open(path, "rb") as fh:
                entries = json.loads(fh.read())
        except (OSError, ValueError):
            continue  # replaced or removed meanwhile
        for name, labels, le, trace, span, value, when in entries:
            key = (name, tuple(sorted(labels.items())), le)
            old = found.get(key)
            if old is None or when > old[3]:
                found[key] = (trace, span, value, when)
    return found


def with_exemplars(
    families: list[Any], found: dict[tuple[str, tuple[Any, ...], str], tuple[Any, ...]]
) -> None:
    """Attach the exemplars to the bucket samples of the histograms, in place."""
    if not found:
        return
    from prometheus_client.samples import Exemplar

    for family in families:
        if family.type != "histogram":
            continue
        bucket = family.name + "_bucket"
        samples = []
        for sample in family.samples:
            if sample.name == bucket:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                hit = found.get((family.name, labels, sample.labels.get("le", "")))
                if hit is not None:
                    trace, span, value, when = hit
                    sample = sample._replace(
                        exemplar=Exemplar({"trace_id": trace, "span_id": span}, value, when)
                    )
            samples.append(sample)
        family.samples = samples


def collect(directory: str) -> list[Any]:
    """Every family of the instance, summed over its processes (the ``otlp:`` ones too):
    what the OTLP push sends.  A file that vanishes or grows meanwhile is read again."""
    from prometheus_client import multiprocess

    files = _Files(directory, multiprocess, otlp=True)
    for _ in range(SCRAPE_ATTEMPTS - 1):
        try:
            return list(files.collect())
        except (OSError, RuntimeError, struct.error):
            pass
    return list(files.collect())


def exposition(accept: bytes) -> tuple[bytes, bytes]:
    """(body, content type) of a scrape: OpenMetrics when the Accept header asks for it."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    openmetrics = b"application/openmetrics-text" in accept
    registry.register(
        _Files(os.environ["PROMETHEUS_MULTIPROC_DIR"], multiprocess, exemplars=openmetrics)
    )
    if openmetrics:
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
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, f"exemplars_{pid}.json"))
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
