"""Metrics over OTLP (``metrics.otlp``): one export for the whole instance every
``pushInterval``, made by one process from what every process has counted.

Nothing here is per request.  The workers already fold their counts into the multiprocess
files once a second (``metrics.WorkerMetrics.fold``) and the master folds a dead process's
into the archive, so the files hold the instance's cumulative series, and they survive a
worker's restart.  The exporter that holds the push lock (``MetricsPush.acquire``: one
process at a time, also across a reload's overlap) reads them (``metrics.collect``) and
writes an ExportMetricsServiceRequest with opentelemetry-proto:

- every family of /metrics under its Prometheus name (as Traefik sends its ``traefik_*``
  names), counters as monotonic sums (``…_total``), gauges, histograms, with units;
  the request families as ``metrics.otlp`` has them (its switches and boundaries);
- the semantic-convention histograms ``http.server.request.duration`` (``http.route`` =
  the router) and ``http.client.request.duration`` (per backend address and port).

Temporality is cumulative (start = the instance's start), or delta: the difference from
the values of the last export, which are kept in a file beside the lock so that a
restarted exporter, or the next configuration's, goes on from them.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
from typing import Any

from hopwire import __version__
from hopwire.telemetry import metrics

REQUEST_FAMILIES = frozenset(
    f"hopwire_{scope}_{what}"
    for scope in ("entrypoint", "router", "service")
    for what in ("requests", "request_duration_seconds", "requests_bytes", "responses_bytes")
)
SERVER = metrics.OTLP + "http_server_request_duration"
CLIENT = metrics.OTLP + "http_client_request_duration"
# the semantic conventions' attribute names for the labels of the two histograms
SEMCONV = {
    SERVER: (
        "http.server.request.duration",
        "Duration of HTTP server requests.",
        {
            "method": "http.request.method",
            "scheme": "url.scheme",
            "code": "http.response.status_code",
            "error_type": "error.type",
            "version": "network.protocol.version",
            "route": "http.route",
        },
    ),
    CLIENT: (
        "http.client.request.duration",
        "Duration of HTTP client requests.",
        {
            "method": "http.request.method",
            "address": "server.address",
            "port": "server.port",
            "scheme": "url.scheme",
            "code": "http.response.status_code",
            "error_type": "error.type",
        },
    ),
}
INT_ATTRIBUTES = frozenset({"http.response.status_code", "server.port"})
# as Traefik sends them; hopwire speaks HTTP/1.1 to every backend
HTTP_PROTOCOL = {"network.protocol.name": "http"}
BACKEND_PROTOCOL = {"network.protocol.name": "http", "network.protocol.version": "1.1"}


def unit_of(name: str) -> str:
    if name.endswith("_bytes") or name.endswith("_bytes_total"):
        return "By"
    if name.endswith("_seconds") or name.endswith("_seconds_total"):
        return "s"
    return "1"


class MetricsPush:
    """Builds the instance's ExportMetricsServiceRequest (``body``), for the one process
    that holds the push lock."""

    def __init__(
        self,
        cfg: Any,
        directory: str,
        resource_attributes: dict[str, str],
        started_ns: int,
    ):
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.metrics.v1 import metrics_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2

        self.pb = metrics_pb2
        self.common = common_pb2
        self.service = metrics_service_pb2
        self.directory = directory
        self.delta = cfg.temporality == "delta"
        self.temporality = (
            metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
            if self.delta
            else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        )
        self.started_ns = started_ns
        self.resource = resource_pb2.Resource(
            attributes=[
                common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                for k, v in resource_attributes.items()
            ]
        )
        self.scope = common_pb2.InstrumentationScope(name="hopwire", version=__version__)
        self.lock_path = os.path.join(directory, "otlp-metrics.lock")
        self.state_path = os.path.join(directory, "otlp-metrics.state")
        self.lock_fd = -1
        self.last: dict[str, list[float]] = {}  # delta: the values of the last export
        self.last_ns = started_ns
        self.pending_state: dict[str, list[float]] = {}
        self.found: dict[tuple[str, tuple[Any, ...], str], tuple[Any, ...]] = {}

    # -- one pusher ----------------------------------------------------------------------

    def acquire(self) -> bool:
        """Whether this process pushes: it holds the lock (taken once, kept until exit)."""
        if self.lock_fd >= 0:
            return True
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.lock_fd = fd
        if self.delta:
            with contextlib.suppress(OSError, ValueError):
                with open(self.state_path) as fh:
                    state = json.load(fh)
                self.last = {k: list(v) for k, v in state["values"].items()}
                self.last_ns = int(state["time_ns"])
        return True

    def sent(self) -> None:
        """The last body was accepted: its values are the base of the next deltas."""
        if not self.delta:
            return
        self.last = self.pending_state
        tmp = self.state_path + ".new"
        with contextlib.suppress(OSError):
            with open(tmp, "w") as fh:
                json.dump({"time_ns": self.last_ns, "values": self.last}, fh)
            os.replace(tmp, self.state_path)

    # -- the request ---------------------------------------------------------------------

    def body(self, now_ns: int) -> tuple[bytes, int]:
        """(ExportMetricsServiceRequest, data points) of every family now."""
        families = metrics.collect(self.directory)
        self.found = metrics.exemplars(self.directory)
        otlp_names = {
            f.name[len(metrics.OTLP) :] for f in families if f.name.startswith(metrics.OTLP)
        }
        start = self.last_ns if self.delta else self.started_ns
        self.pending_state = dict(self.last)
        out = []
        points = 0
        for family in families:
            name = family.name
            if name in REQUEST_FAMILIES and name in otlp_names:
                continue  # Prometheus's own request families: metrics.otlp has its own
            if name in (SERVER, CLIENT):
                semconv_name, doc, keys = SEMCONV[name]
                constant = HTTP_PROTOCOL if name == SERVER else BACKEND_PROTOCOL
                metric = self.histogram(
                    family, semconv_name, doc, "s", keys, start, now_ns, constant
                )
            elif name.startswith(metrics.OTLP):
                name = name[len(metrics.OTLP) :]
                metric = self.convert(family, name, start, now_ns)
            else:
                metric = self.convert(family, name, start, now_ns)
            if metric is not None:
                points += len(getattr(metric, metric.WhichOneof("data")).data_points)
                out.append(metric)
        if self.delta:
            self.last_ns = now_ns
        request = self.service.ExportMetricsServiceRequest(
            resource_metrics=[
                self.pb.ResourceMetrics(
                    resource=self.resource,
                    scope_metrics=[self.pb.ScopeMetrics(scope=self.scope, metrics=out)],
                )
            ]
        )
        return request.SerializeToString(), points

    def attributes(self, labels: dict[str, str], keys: dict[str, str] | None = None) -> list[Any]:
        common = self.common
        out = []
        for label, value in labels.items():
            key = keys.get(label, label) if keys is not None else label
            if value == "" and keys is not None:
                continue  # an attribute the request does not have (no route, no error)
            any_value = (
                common.AnyValue(int_value=int(value))
                if key in INT_ATTRIBUTES and value.isdigit()
                else common.AnyValue(string_value=value)
            )
            out.append(common.KeyValue(key=key, value=any_value))
        return out

    def exemplars_of(
        self, name: str, ident: tuple[tuple[str, str], ...], les: list[Any], since: int
    ) -> list[Any]:
        """The series' exemplars (a sampled request's ids per bucket, the newest), those of
        this export's interval only when the temporality is delta."""
        out = []
        for _, _, le in les:
            hit = self.found.get((name, ident, le))
            if hit is None:
                continue
            trace, span, value, when = hit
            when_ns = int(when * 1e9)
            if self.delta and when_ns < since:
                continue
            out.append(
                self.pb.Exemplar(
                    time_unix_nano=when_ns,
                    as_double=value,
                    trace_id=bytes.fromhex(trace),
                    span_id=bytes.fromhex(span),
                )
            )
        return out

    def change(self, key: str, values: list[float]) -> list[float]:
        """Delta: ``values`` less those of the last export (a series that went back, such as
        one compacted away and seen again, starts over)."""
        self.pending_state[key] = values
        if not self.delta:
            return values
        before = self.last.get(key)
        if (
            before is None
            or len(before) != len(values)
            or any(a < b for a, b in zip(values, before, strict=True))
        ):
            return values
        return [a - b for a, b in zip(values, before, strict=True)]

    def convert(self, family: Any, name: str, start: int, now: int) -> Any:
        pb = self.pb
        if family.type == "counter":
            points = []
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue  # _created
                key = json.dumps([sample.name, sorted(sample.labels.items())])
                (value,) = self.change(key, [sample.value])
                points.append(
                    pb.NumberDataPoint(
                        attributes=self.attributes(sample.labels),
                        start_time_unix_nano=start,
                        time_unix_nano=now,
                        as_double=value,
                    )
                )
            if not points:
                return None
            total = name + "_total"
            return pb.Metric(
                name=total,
                description=family.documentation,
                unit=unit_of(total),
                sum=pb.Sum(
                    data_points=points,
                    aggregation_temporality=self.temporality,
                    is_monotonic=True,
                ),
            )
        if family.type == "gauge":
            points = [
                pb.NumberDataPoint(
                    attributes=self.attributes(sample.labels),
                    time_unix_nano=now,
                    as_double=sample.value,
                )
                for sample in family.samples
            ]
            if not points:
                return None
            return pb.Metric(
                name=name,
                description=family.documentation,
                unit=unit_of(name),
                gauge=pb.Gauge(data_points=points),
            )
        if family.type == "histogram":
            return self.histogram(
                family, name, family.documentation, unit_of(name), None, start, now
            )
        return None

    def histogram(
        self,
        family: Any,
        name: str,
        doc: str,
        unit: str,
        keys: dict[str, str] | None,
        start: int,
        now: int,
        constant: dict[str, str] | None = None,
    ) -> Any:
        pb = self.pb
        series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            entry = series.setdefault(
                tuple(sorted(labels.items())), {"labels": labels, "le": [], "sum": 0.0}
            )
            if sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                entry["le"].append((float(le), sample.value, le))
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
        points = []
        for ident, entry in series.items():
            les = sorted(entry["le"])
            if not les:
                continue
            cumulative = [v for _, v, _ in les]
            counts = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
            key = json.dumps([name, ident])
            values = self.change(key, [entry["sum"], *counts])
            total, counts = values[0], values[1:]
            if not any(counts) and self.delta:
                continue
            points.append(
                pb.HistogramDataPoint(
                    attributes=self.attributes({**(constant or {}), **entry["labels"]}, keys),
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    count=int(sum(counts)),
                    sum=total,
                    bucket_counts=[int(c) for c in counts],
                    explicit_bounds=[le for le, _, _ in les if le != float("inf")],
                    exemplars=self.exemplars_of(family.name, ident, les, start),
                )
            )
        if not points:
            return None
        return pb.Metric(
            name=name,
            description=doc,
            unit=unit,
            histogram=pb.Histogram(data_points=points, aggregation_temporality=self.temporality),
        )
