"""The access log and the application log, from a real hopwire."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import h11

from tests.harness import catch_all, exchange, free_port, request, service, wait_for
from tests.otlp_receiver import GrpcReceiver

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_every_field(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    b = make_backend()
    log = tmp_path / "access.log"
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "api": {"rule": "PathPrefix(`/`)", "service": "s", "priority": 1},
                    "gone": {"rule": "PathPrefix(`/gone`)", "service": "down"},
                },
                "services": {
                    "s": service(b.url),
                    "down": service(f"http://127.0.0.1:{free_port()}"),
                },
            },
            "accessLog": {"filePath": str(log)},
        }
    )
    request(
        hw.port,
        "POST",
        "/echo?q=1",
        body=b"hello",
        host="a.test:8080",
        headers=[("user-agent", "t/1")],
    )
    [line] = wait_for(lambda: lines(log))
    assert set(line) == {
        "StartUTC",
        "Duration",
        "entryPointName",
        "RouterName",
        "ServiceName",
        "ServiceURL",
        "ClientHost",
        "ClientPort",
        "RequestMethod",
        "RequestPath",
        "RequestProtocol",
        "RequestHost",
        "RequestContentSize",
        "DownstreamStatus",
        "DownstreamContentSize",
        "OriginStatus",
        "OriginDuration",
        "Overhead",
        "RetryAttempts",
        "RequestScheme",  # the TLS fields only on TLS connections (test_tls)
    }
    assert line["RequestScheme"] == "http"
    assert line["entryPointName"] == "web" and line["RouterName"] == "api"
    assert line["ServiceName"] == "s" and line["ServiceURL"] == b.url
    assert line["ClientHost"] == "127.0.0.1" and line["ClientPort"] > 0
    assert (line["RequestMethod"], line["RequestPath"], line["RequestProtocol"]) == (
        "POST",
        "/echo?q=1",
        "HTTP/1.1",
    )
    assert line["RequestHost"] == "a.test" and line["RequestContentSize"] == 5
    assert line["DownstreamStatus"] == line["OriginStatus"] == 200
    assert line["DownstreamContentSize"] > 0
    assert 0 < line["OriginDuration"] <= line["Duration"]
    assert line["Overhead"] == line["Duration"] - line["OriginDuration"]
    assert line["RetryAttempts"] == 0 and line["StartUTC"].endswith("Z")
    # a request whose backend never answered has no origin status
    request(hw.port, "GET", "/gone")
    last = wait_for(lambda: [x for x in lines(log) if x["RequestPath"] == "/gone"])[0]
    assert last["DownstreamStatus"] == 502 and last.get("OriginStatus") is None
    assert last["RouterName"] == "gone"


def test_filters_fields_and_headers(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    b = make_backend()
    log = tmp_path / "access.log"
    hw = make_hopwire(
        {
            "http": catch_all(b.url),
            "accessLog": {
                "filePath": str(log),
                "filters": {"statusCodes": ["404", "500-599"], "minDuration": "300ms"},
                "fields": {
                    "defaultMode": "drop",
                    "names": {"DownstreamStatus": "keep", "RequestPath": "keep"},
                    "headers": {
                        "defaultMode": "keep",
                        "names": {"Authorization": "redact", "Cookie": "drop"},
                    },
                },
            },
        }
    )
    hdrs = [("Authorization", "Bearer secret"), ("Cookie", "a=b"), ("X-Id", "7")]
    request(hw.port, "GET", "/ok", headers=hdrs)  # 200, fast: filtered out
    request(hw.port, "GET", "/status/404", headers=hdrs)
    request(hw.port, "GET", "/status/503")
    request(hw.port, "GET", "/slow/0.4")  # 200 but slow
    got = wait_for(lambda: lines(log) if len(lines(log)) == 3 else None)
    time.sleep(0.5)
    assert sorted(x["RequestPath"] for x in lines(log)) == [
        "/slow/0.4",
        "/status/404",
        "/status/503",
    ]  # two workers: their own order
    first = next(x for x in got if x["RequestPath"] == "/status/404")
    assert first["DownstreamStatus"] == 404
    assert first["request_Authorization"] == "REDACTED"
    assert first["request_X-Id"] == "7"
    assert "request_Cookie" not in first and "ClientHost" not in first


def test_retry_filter_and_common_format(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    b = make_backend()
    log = tmp_path / "access.log"
    hw = make_hopwire(
        {
            "http": catch_all(b.url),
            "accessLog": {"filePath": str(log), "filters": {"retryAttempts": True}},
        },
        workers=1,
    )
    request(hw.port, "GET", "/first")
    b.drop_reused = True
    request(hw.port, "GET", "/retried")
    [line] = wait_for(lambda: lines(log))
    assert line["RequestPath"] == "/retried" and line["RetryAttempts"] == 1
    common = tmp_path / "common.log"
    hw2 = make_hopwire(
        {
            "http": catch_all(make_backend().url),
            "accessLog": {"filePath": str(common), "format": "common"},
        }
    )
    request(hw2.port, "GET", "/c", headers=[("user-agent", "ua/1"), ("referer", "http://r/")])
    text = wait_for(lambda: common.exists() and common.read_text())
    assert text.startswith("127.0.0.1 - - [") and '"GET /c HTTP/1.1" 200 ' in text
    assert '"http://r/" "ua/1" 0 "r" ' in text and text.rstrip().endswith("ms")


def test_usr1_reopen_and_write_errors_never_stall(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    b = make_backend()
    log = tmp_path / "access.log"
    hw = make_hopwire({"http": catch_all(b.url), "accessLog": {"filePath": str(log)}})
    request(hw.port, "GET", "/before")
    wait_for(lambda: lines(log))
    log.rename(tmp_path / "access.log.1")
    hw.signal(signal.SIGUSR1)
    time.sleep(0.5)
    request(hw.port, "GET", "/after")
    wait_for(lambda: [x["RequestPath"] for x in lines(log)] == ["/after"])
    # a full disk: /dev/full fails every write; requests go on, the error is logged once
    full = make_hopwire({"http": catch_all(b.url), "accessLog": {"filePath": "/dev/full"}})
    with socket.create_connection(("127.0.0.1", full.port)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(200):
            assert exchange(sock, "GET", "/", conn=conn)[0] == 200
    wait_for(lambda: "cannot be written" in full.logs())
    assert full.logs().count("cannot be written") <= 2  # at most once per interval per worker


def test_trace_ids_in_both_logs(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    rx = GrpcReceiver()
    try:
        log = tmp_path / "access.log"
        hw = make_hopwire(
            {
                "http": {
                    "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "d"}},
                    "services": {"d": service(f"http://127.0.0.1:{free_port()}")},
                },
                "tracing": {"otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}}},
                "accessLog": {"filePath": str(log)},
            }
        )
        assert request(hw.port, "GET", "/t", headers=[("traceparent", PARENT)])[0] == 502
        [line] = wait_for(lambda: lines(log))
        assert line["trace_id"] == PARENT[3:35] and len(line["span_id"]) == 16
        app = next(json.loads(x) for x in hw.logs().splitlines() if "connect_failed" in x)
        assert (app["trace_id"], app["span_id"]) == (line["trace_id"], line["span_id"])
        for key in ("time", "level", "msg", "pid", "worker"):
            assert key in app
    finally:
        rx.close()


def test_access_log_off_by_default(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    request(hw.port, "GET", "/")
    time.sleep(0.6)
    assert '"RequestPath"' not in hw.logs()


def test_application_log_common_format(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url), "log": {"format": "common", "level": "DEBUG"}})
    first = hw.logs().splitlines()[0]
    assert not first.startswith("{") and " INFO [" in first and "serving" in hw.logs()


def test_unwritable_access_log_is_counted_not_fatal(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url), "accessLog": {"filePath": str(tmp_path / "no" / "access.log")}}
    )
    for _ in range(5):
        assert request(hw.port, "GET", "/x")[0] == 200  # requests never wait for the log

    def counters() -> dict[str, float]:
        text = request(hw.internal, "GET", "/metrics")[2].decode()
        return {
            s.name: s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name.startswith("hopwire_accesslog_")
        }

    wait_for(lambda: counters().get("hopwire_accesslog_lines_dropped_total") == 5)
    assert counters()["hopwire_accesslog_write_errors_total"] >= 1
    assert "access log" in hw.logs() and "cannot be written" in hw.logs()
