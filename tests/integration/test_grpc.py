"""gRPC and HTTP/2 backends, end to end: a real grpcio server behind ``h2c://``, real grpcio
clients in front (h2c by prior knowledge, and TLS with ALPN), a real hopwire master with
workers between.  Every call kind, status and trailing metadata intact, cancellation reaching
the backend, proxy-side failures answered as gRPC statuses, and the trailers relayed to an
HTTP/1.1 client as a chunked body's trailer section (h11 as the strict peer)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import h11
import pytest

from tests.certs import Authority
from tests.harness import catch_all, free_port, h11_round, request, wait_for


class Service:
    """A gRPC service of raw-bytes methods (no generated code), and what it saw."""

    def __init__(self, port: int = 0, tls: Any = None) -> None:
        self.metadata: list[dict[str, str]] = []
        self.cancelled = threading.Event()
        self.port = port or free_port()
        handler = grpc.method_handlers_generic_handler(
            "t.S",
            {
                "U": grpc.unary_unary_rpc_method_handler(self.unary),
                "SS": grpc.unary_stream_rpc_method_handler(self.server_stream),
                "CS": grpc.stream_unary_rpc_method_handler(self.client_stream),
                "B": grpc.stream_stream_rpc_method_handler(self.bidi),
                "Slow": grpc.unary_stream_rpc_method_handler(self.slow),
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        self.server.add_generic_rpc_handlers((handler,))
        if tls is None:
            self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        else:  # a Leaf: gRPC over TLS chooses h2 by ALPN, and refuses anything else
            creds = grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])
            self.server.add_secure_port(f"127.0.0.1:{self.port}", creds)
        self.server.start()

    @property
    def url(self) -> str:
        return f"h2c://127.0.0.1:{self.port}"

    def unary(self, request: bytes, ctx: Any) -> bytes:
        self.metadata.append(dict(ctx.invocation_metadata()))
        if request == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        ctx.set_trailing_metadata((("x-trail", "t1"),))
        return b"echo:" + request

    def server_stream(self, request: bytes, ctx: Any) -> Iterator[bytes]:
        for i in range(int(request)):
            yield b"m%d" % i

    def client_stream(self, requests: Iterator[bytes], ctx: Any) -> bytes:
        return b"|".join(requests)

    def bidi(self, requests: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
        for message in requests:
            yield message.upper()

    def slow(self, request: bytes, ctx: Any) -> Iterator[bytes]:
        ctx.add_callback(self.cancelled.set)  # called when the call ends, cancelled or not
        yield b"first"
        for _ in range(300):
            if not ctx.is_active():
                return
            time.sleep(0.1)
        yield b"late"

    def close(self) -> None:
        self.server.stop(0)


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service()
    yield s
    s.close()


def calls(channel: grpc.Channel, service: Service) -> None:
    """Every call kind through ``channel``, checked."""
    unary = channel.unary_unary("/t.S/U")
    reply, call = unary.with_call(b"hello", metadata=(("x-mine", "v"),), timeout=10)
    assert reply == b"echo:hello"
    assert ("x-trail", "t1") in [(m.key, m.value) for m in call.trailing_metadata()]
    assert service.metadata[-1]["x-mine"] == "v"
    assert service.metadata[-1]["x-forwarded-for"] == "127.0.0.1"  # a proxied call
    big = bytes(range(256)) * 4096  # 1 MiB each way: many windows, both directions
    assert unary(big, timeout=20) == b"echo:" + big
    with pytest.raises(grpc.RpcError) as failed:
        unary(b"fail", timeout=10)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert failed.value.details() == "no such thing"
    assert list(channel.unary_stream("/t.S/SS")(b"5", timeout=10)) == [
        b"m0",
        b"m1",
        b"m2",
        b"m3",
        b"m4",
    ]
    assert channel.stream_unary("/t.S/CS")(iter([b"a", b"b", b"c"]), timeout=10) == b"a|b|c"
    assert list(channel.stream_stream("/t.S/B")(iter([b"x", b"y", b"z"]), timeout=10)) == [
        b"X",
        b"Y",
        b"Z",
    ]


def test_every_call_kind_over_h2c_and_tls(
    service: Service, make_hopwire: Any, tmp_path: Path
) -> None:
    ca = Authority(tmp_path)
    leaf = ca.leaf("a.test")
    tls_port = free_port()
    hw = make_hopwire(
        {
            "entryPoints": {"websecure": {"address": f"127.0.0.1:{tls_port}", "http": {"tls": {}}}},
            "tls": {"certificates": [leaf.files()]},
            "http": catch_all(service.url),
        }
    )
    with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
        calls(channel, service)
    creds = grpc.ssl_channel_credentials(ca.path.read_bytes())
    options = (("grpc.ssl_target_name_override", "a.test"),)
    with grpc.secure_channel(f"127.0.0.1:{tls_port}", creds, options) as channel:
        calls(channel, service)
    # many calls at once on one client connection: the backend connection carries them all
    with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
        unary = channel.unary_unary("/t.S/U")
        with futures.ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda i: unary(b"%d" % i, timeout=20), range(200)))
    assert replies == [b"echo:%d" % i for i in range(200)]
    assert hw.proc.poll() is None


def test_https_backend_chosen_h2_by_alpn_and_disable_http2(
    make_hopwire: Any, tmp_path: Path
) -> None:
    ca = Authority(tmp_path)
    service = Service(tls=ca.leaf("a.test"))
    url = f"https://127.0.0.1:{service.port}"
    transport = {"serverName": "a.test", "rootCAs": [str(ca.path)]}
    try:
        hw = make_hopwire(
            {
                "http": {
                    "routers": {
                        "h2": {"rule": "PathPrefix(`/t.S`)", "service": "h2"},
                        "h1": {"rule": "PathPrefix(`/t.Old`)", "service": "h1"},
                    },
                    "services": {
                        "h2": {
                            "loadBalancer": {"servers": [{"url": url}], "serversTransport": "t"}
                        },
                        "h1": {
                            "loadBalancer": {"servers": [{"url": url}], "serversTransport": "old"}
                        },
                    },
                    "serversTransports": {
                        "t": transport,
                        "old": {**transport, "disableHTTP2": True},
                    },
                }
            }
        )
        with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
            calls(channel, service)
            # disableHTTP2: ALPN offers http/1.1 only, which a gRPC server refuses
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary("/t.Old/U")(b"x", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert hw.proc.poll() is None
    finally:
        service.close()


def test_grpc_calls_are_counted_as_traefik_counts_them(service: Service, make_hopwire: Any) -> None:
    """protocol="grpc" and the call's gRPC status as the code (Traefik's labels): from the
    trailers (OK), from a Trailers-Only answer (NOT_FOUND), from hopwire's own answer
    (UNAVAILABLE: no server)."""
    closed = free_port()
    hw = make_hopwire(
        {
            "metrics": {"prometheus": {"addRoutersLabels": True}},
            "http": {
                "routers": {
                    "g": {"rule": "PathPrefix(`/t.S/`)", "service": "g"},
                    "down": {"rule": "PathPrefix(`/t.Down/`)", "service": "down"},
                },
                "services": {
                    "g": {"loadBalancer": {"servers": [{"url": service.url}]}},
                    "down": {"loadBalancer": {"servers": [{"url": f"h2c://127.0.0.1:{closed}"}]}},
                },
            },
        }
    )
    with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
        unary = channel.unary_unary("/t.S/U")
        for _ in range(3):
            assert unary(b"x", timeout=10) == b"echo:x"
        with pytest.raises(grpc.RpcError):
            unary(b"fail", timeout=10)
        with pytest.raises(grpc.RpcError):
            channel.unary_unary("/t.Down/M")(b"x", timeout=10)

    def counted() -> dict[tuple[str, str], float]:
        text = request(hw.internal, "GET", "/metrics")[2].decode()
        out: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            if line.startswith("hopwire_router_requests_total{") and 'protocol="grpc"' in line:
                code = line.split('code="', 1)[1].split('"', 1)[0]
                router = line.split('router="', 1)[1].split('"', 1)[0]
                out[(router, code)] = out.get((router, code), 0) + float(line.rsplit(" ", 1)[1])
        return out

    expected = {("g", "0"): 3.0, ("g", "5"): 1.0, ("down", "14"): 1.0}
    try:
        wait_for(lambda: counted() == expected, timeout=10)
    except AssertionError:
        raise AssertionError(f"counted {counted()}, expected {expected}") from None


def test_cancellation_reaches_the_backend(service: Service, make_hopwire: Any) -> None:
    hw = make_hopwire({"http": catch_all(service.url)})
    with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
        call = channel.unary_stream("/t.S/Slow")(b"", timeout=30)
        assert next(call) == b"first"
        call.cancel()
        # the client's RST_STREAM ends the exchange, which resets the backend's stream
        assert service.cancelled.wait(10), "the backend never heard of the cancellation"
        # and the backend connection goes on carrying calls
        assert channel.unary_unary("/t.S/U")(b"again", timeout=10) == b"echo:again"


def test_proxy_side_failures_are_grpc_statuses(service: Service, make_hopwire: Any) -> None:
    closed = free_port()  # nothing listens here
    silent = socket.socket()  # accepts, and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    quiet = f"h2c://127.0.0.1:{silent.getsockname()[1]}"
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "down": {"rule": "PathPrefix(`/t.S/U`)", "service": "down"},
                    "slow": {"rule": "PathPrefix(`/t.S/Slow`)", "service": "slow"},
                },
                "services": {
                    "down": {"loadBalancer": {"servers": [{"url": f"h2c://127.0.0.1:{closed}"}]}},
                    "slow": {
                        "loadBalancer": {"servers": [{"url": quiet}], "serversTransport": "quick"}
                    },
                },
                "serversTransports": {
                    "quick": {"forwardingTimeouts": {"responseHeaderTimeout": "1s"}}
                },
            }
        }
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
            with pytest.raises(grpc.RpcError) as down:
                channel.unary_unary("/t.S/U")(b"x", timeout=10)
            assert down.value.code() == grpc.StatusCode.UNAVAILABLE
            assert down.value.details() == "connect_failed"  # hopwire's answer
            with pytest.raises(grpc.RpcError) as unrouted:
                channel.unary_unary("/t.Other/M")(b"x", timeout=10)
            assert unrouted.value.code() == grpc.StatusCode.UNIMPLEMENTED  # 404: no route
            with pytest.raises(grpc.RpcError) as late:
                list(channel.unary_stream("/t.S/Slow")(b"", timeout=20))
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert late.value.details() == "response_timeout"
    finally:
        silent.close()
    assert hw.proc.poll() is None


def test_trailers_reach_an_http11_client_as_a_chunked_trailer_section(
    service: Service, make_hopwire: Any
) -> None:
    hw = make_hopwire({"http": catch_all(service.url)})
    message = b"hello"
    body = b"\x00" + struct.pack(">I", len(message)) + message  # one gRPC message frame
    events = h11_round(
        hw.port,
        h11.Request(
            method="POST",
            target="/t.S/U",
            headers=[
                ("host", "a.test"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("content-length", str(len(body))),
            ],
        ),
        h11.Data(data=body),
        h11.EndOfMessage(),
    )
    response, end = events[0], events[-1]
    assert response.status_code == 200
    data = b"".join(e.data for e in events if isinstance(e, h11.Data))
    assert data[5:] == b"echo:hello"
    trailers = dict(end.headers)
    assert trailers[b"grpc-status"] == b"0"
    assert trailers[b"x-trail"] == b"t1"


def test_backend_connection_loss_fails_the_open_calls_and_recovers(
    service: Service, make_hopwire: Any
) -> None:
    hw = make_hopwire({"http": catch_all(service.url)})
    with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
        call = channel.unary_stream("/t.S/Slow")(b"", timeout=30)
        assert next(call) == b"first"
        service.server.stop(0)  # the backend goes away mid-call
        with pytest.raises(grpc.RpcError) as cut:
            list(call)
        assert cut.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
    again = Service(service.port)  # back on the same port
    try:
        with grpc.insecure_channel(f"127.0.0.1:{hw.port}") as channel:
            unary = channel.unary_unary("/t.S/U")

            def served() -> bool:
                try:
                    return bool(unary(b"back", timeout=5) == b"echo:back")
                except grpc.RpcError:
                    return False

            assert wait_for(served, timeout=15)
    finally:
        again.close()
    assert hw.proc.poll() is None


class H2Backend:
    """An h2c server on python-hyper's h2 (the independent reference): it answers every
    request with a JSON echo of what it received (pseudo-header fields, fields, body) and a
    trailer field, and keeps what it saw."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen: list[dict[str, Any]] = []
        self.errors: list[str] = []  # what was not HTTP/2 (a test checks there is none)
        self.connections = 0
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"h2c://127.0.0.1:{self.port}"

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions

        h2c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        heads: dict[int, list[tuple[str, str]]] = {}
        bodies: dict[int, bytes] = {}
        trailers: dict[int, list[tuple[str, str]]] = {}
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    events = h2c.receive_data(data)
                except h2.exceptions.ProtocolError as exc:  # not HTTP/2: kept, connection closed
                    self.errors.append(repr(exc))
                    return
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = list(event.headers)
                        bodies[event.stream_id] = b""
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers[event.stream_id] = list(event.headers)
                    elif isinstance(event, h2.events.StreamEnded):
                        sid = event.stream_id
                        seen = {
                            "headers": heads[sid],
                            "body": bodies[sid].decode("latin-1"),
                            "trailers": trailers.get(sid, []),
                        }
                        self.seen.append(seen)
                        answer = json.dumps(seen).encode()
                        h2c.send_headers(sid, [(":status", "200"), ("x-h2", "yes")])
                        h2c.send_data(sid, answer)
                        h2c.send_headers(sid, [("x-checksum", str(len(answer)))], end_stream=True)
                conn.sendall(h2c.data_to_send())

    def close(self) -> None:
        # shut down first: a thread blocked in accept() keeps a merely closed listening socket
        # alive (and would take a later test's connection), as tests.harness.Backend does
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_http11_clients_through_an_h2c_backend(make_hopwire: Any) -> None:
    """GET, a body of known length, a chunked body, from a strict HTTP/1.1 client (h11): what
    the HTTP/2 backend receives (RFC 9113 §8.3.1: :authority from Host, no
    connection-specific field) and the answer (no length: chunked, trailers relayed)."""
    backend = H2Backend()
    try:
        hw = make_hopwire({"http": catch_all(backend.url)})
        cases = [
            ("GET", [], b"", None),
            ("POST", [("content-length", "5")], b"hello", None),
            ("POST", [("transfer-encoding", "chunked")], b"", [b"abc", b"defgh"]),
        ]
        for method, extra, body, chunks in cases:
            headers = [
                ("host", "a.test:81"),
                ("connection", "keep-alive"),
                ("te", "trailers"),
                ("x-mine", "v"),
                *extra,
            ]
            events = h11_round(
                hw.port,
                h11.Request(method=method, target="/p?q=1", headers=headers),
                *(h11.Data(data=piece) for piece in chunks or ([body] if body else [])),
                h11.EndOfMessage(headers=[("x-sum", "9")] if chunks else []),
            )
            response = events[0]
            assert response.status_code == 200
            assert (b"transfer-encoding", b"chunked") in response.headers  # no length given
            echo = json.loads(b"".join(e.data for e in events if isinstance(e, h11.Data)))
            got = dict(echo["headers"])
            assert got[":method"] == method and got[":path"] == "/p?q=1"
            assert got[":authority"] == "a.test:81" and got[":scheme"] == "http"
            assert "host" not in got and "connection" not in got
            assert "transfer-encoding" not in got and got["te"] == "trailers"
            assert got["x-mine"] == "v" and got["x-forwarded-for"] == "127.0.0.1"
            assert echo["body"] == (body or b"".join(chunks or [])).decode()
            # a chunked body's trailer section: HEADERS after the DATA
            assert echo["trailers"] == ([["x-sum", "9"]] if chunks else [])
            assert dict(events[-1].headers)[b"x-checksum"].isdigit()  # the trailer
        assert backend.connections <= 2  # one per worker: its streams share it
        assert backend.errors == []  # hopwire spoke HTTP/2 on every connection
    finally:
        backend.close()


def test_grpc_beside_traefik(service: Service, make_hopwire: Any, tmp_path: Path) -> None:
    """The same calls through hopwire and the real Traefik 3.7 (an h2c:// server, h2c by prior
    knowledge on a plain entrypoint): the same answers, statuses and trailing metadata, and
    the backend receives the same metadata from both (less what each proxy names itself)."""
    from tests.harness import Traefik

    closed = free_port()
    dynamic = {
        "http": {
            "routers": {
                "g": {"rule": "PathPrefix(`/t.S/`)", "service": "g"},
                "down": {"rule": "PathPrefix(`/t.Down/`)", "service": "down"},
            },
            "services": {
                "g": {"loadBalancer": {"servers": [{"url": service.url}]}},
                "down": {"loadBalancer": {"servers": [{"url": f"h2c://127.0.0.1:{closed}"}]}},
            },
        }
    }
    hw = make_hopwire(dynamic)
    traefik = Traefik(tmp_path, dynamic)
    try:
        traefik.wait_routed("/t.S/U")
        seen: dict[str, Any] = {}
        for name, port in (("hopwire", hw.port), ("traefik", traefik.port)):
            service.metadata.clear()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                calls(channel, service)
                outcomes = []
                for method in ("/t.Down/M", "/t.Nowhere/M"):
                    try:
                        channel.unary_unary(method)(b"x", timeout=10)
                        outcomes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as exc:
                        outcomes.append(exc.code())
            seen[name] = (dict(service.metadata[0]), outcomes)
        ours, theirs = seen["hopwire"], seen["traefik"]
        # a backend that cannot be reached, no route: the same status to the client
        assert ours[1] == theirs[1] == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED]
        # each proxy names itself its own way; Go's transport asks for gzip on its own
        skip = {"x-forwarded-server", "x-forwarded-port", "user-agent", "accept-encoding"}
        mine = {k: v for k, v in ours[0].items() if k not in skip}
        other = {k: v for k, v in theirs[0].items() if k not in skip}
        assert mine.keys() == other.keys(), (mine, other)
        for key in mine:
            assert mine[key].replace(str(hw.port), "P") == other[key].replace(
                str(traefik.port), "P"
            ), (key, mine, other)
    finally:
        traefik.stop()


def test_a_silent_backend_connection_is_pinged_then_closed(make_hopwire: Any) -> None:
    """forwardingTimeouts.readIdleTimeout and pingTimeout: a backend that takes a request and
    then falls silent (no answer, no PING ACK, its socket still open) is sent a PING; when
    it goes unanswered the connection is closed and the waiting exchange fails (502) rather
    than waiting for ever (no responseHeaderTimeout here)."""
    import h2.config
    import h2.connection

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    held: list[socket.socket] = []

    def frozen() -> None:
        conn, _ = sock.accept()
        held.append(conn)
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        conn.settimeout(5)
        try:
            while not any(
                type(e).__name__ == "RequestReceived" for e in h2c.receive_data(conn.recv(65536))
            ):
                conn.sendall(h2c.data_to_send())
            conn.sendall(h2c.data_to_send())
        except OSError:
            return
        # from now on: silent, and never reads (a peer gone behind a NAT)

    threading.Thread(target=frozen, daemon=True).start()
    transport = {"forwardingTimeouts": {"readIdleTimeout": "1s", "pingTimeout": "1s"}}
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
                "services": {
                    "s": {
                        "loadBalancer": {
                            "servers": [{"url": f"h2c://127.0.0.1:{sock.getsockname()[1]}"}],
                            "serversTransport": "t",
                        }
                    }
                },
                "serversTransports": {"t": transport},
            }
        }
    )
    try:
        status = request(hw.port, "GET", "/waits", timeout=30)[0]
        assert status == 502
        assert "closing" in hw.logs() and "PING unanswered" in hw.logs()
    finally:
        for conn in held:
            conn.close()
        sock.close()
