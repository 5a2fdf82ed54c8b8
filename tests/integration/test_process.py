"""The master and its workers as an operator drives them: signals, reloads, crashes, systemd
(RELIABILITY 29-32)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.harness import ROOT, catch_all, exchange, request, service, wait_for


def basic(backend: Any, **extra: Any) -> dict[str, Any]:
    return {"http": catch_all(backend.url), **extra}


class Hammer:
    """A client sending requests in a loop, each on a new connection, counting failures."""

    def __init__(self, port: int, target: str = "/"):
        self.port = port
        self.target = target
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = request(self.port, "GET", self.target, timeout=10)[0]
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {status}")
            except Exception as exc:
                self.failures.append(repr(exc))

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(15)


def test_sigterm_lets_a_long_response_complete(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(basic(b))
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        sock.sendall(b"GET /stream/16/0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        hw.signal(signal.SIGTERM)
        wait_for(lambda: hw.ping() != 200)  # stops accepting
        conn = h11.Connection(h11.CLIENT)
        conn.receive_data(first)
        got = 0
        headers: list[tuple[bytes, bytes]] = []
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(ev, h11.Response):
                headers = list(ev.headers)
            elif isinstance(ev, h11.Data):
                got += len(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                break
        assert got == 16 * 65536
    assert hw.proc.wait(15) == 0
    assert "graceful stop" in hw.logs()
    del headers


def test_sigterm_when_idle_exits_promptly(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(basic(b, entryPoints={}), start=False)
    hw.config["entryPoints"]["web"]["transport"] = {"lifeCycle": {"graceTimeOut": "60s"}}
    hw.write(hw.config)
    hw.start()
    with socket.create_connection(("127.0.0.1", hw.port)) as idle:  # an idle keep-alive client
        assert exchange(idle, "GET", "/")[0] == 200
        hw.signal(signal.SIGTERM)
        # far sooner than the 60 s graceTimeOut: idle connections are closed, not waited for
        assert hw.proc.wait(15) == 0
    # and the port binds again at once (RELIABILITY 32)
    again = make_hopwire(basic(b), start=False)
    again.port = hw.port
    again.internal = hw.internal
    again.config["entryPoints"] = hw.config["entryPoints"]
    again.write(again.config)
    again.start()
    assert request(again.port, "GET", "/")[0] == 200


def test_second_sigterm_stops_at_once(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(basic(b))
    sock = socket.create_connection(("127.0.0.1", hw.port))
    sock.sendall(b"GET /slow/30 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: any(r[1] == "/slow/30" for r in b.requests))
    hw.signal(signal.SIGTERM)
    wait_for(lambda: hw.ping() != 200)
    hw.signal(signal.SIGTERM)
    assert hw.proc.wait(10) == 0
    sock.close()


def test_reload_good_and_bad_config_without_failed_requests(
    make_backend: Any, make_hopwire: Any
) -> None:
    b, newb = make_backend("old"), make_backend("new")
    hw = make_hopwire(basic(b))
    hammer = Hammer(hw.port)
    wait_for(lambda: hammer.ok > 50)
    # a bad config: logged, the old one keeps serving
    bad = dict(hw.config)
    bad["http"] = {
        "routers": {"r": {"rule": "PathPrefix(`/`", "service": "s"}},
        "services": {"s": service(b.url)},
    }
    hw.write(bad)
    hw.signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in hw.logs())
    assert "http.routers.r.rule" in hw.logs()
    pids = set(hw.worker_pids())
    # a good config: a new generation, the old one drained
    good = basic(newb)
    good["entryPoints"] = hw.config["entryPoints"]
    good["workers"] = 2
    hw.write(good)
    ok_before = hammer.ok
    hw.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded: generation 2" in hw.logs())
    wait_for(lambda: not pids & set(hw.worker_pids()))  # old workers drained and exited
    wait_for(lambda: hammer.ok > ok_before + 50)
    hammer.finish()
    assert hammer.failures == []
    assert request(hw.port, "GET", "/echo")[2].find(b'"server": "new"') > 0


def test_keep_alive_client_across_reload(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(basic(b))
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        conn = h11.Connection(h11.CLIENT)
        assert exchange(sock, "GET", "/", conn=conn)[0] == 200
        hw.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded: generation 2" in hw.logs())
        # the old worker answers the next request with Connection: close, never a reset
        status, headers, _ = exchange(sock, "GET", "/", conn=conn)
        assert status == 200
        assert ("connection", "close") in [(n.lower(), v) for n, v in headers]


def owner_of(client: socket.socket, pids: list[int]) -> int:
    """The worker pid holding the server side of ``client``'s connection."""
    port, server_port = client.getsockname()[1], client.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local = int(parts[1].split(":")[1], 16)
        remote = int(parts[2].split(":")[1], 16)
        # the server side of this very connection (not a TIME_WAIT entry, whose inode is 0)
        if remote == port and local == server_port and parts[9] != "0":
            inode = parts[9]
    assert inode
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def test_sigkill_of_a_worker(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(basic(b), workers=2)
    pids = hw.worker_pids()
    assert len(pids) == 2
    clients = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", hw.port), timeout=10)
        conn = h11.Connection(h11.CLIENT)
        assert exchange(s, "GET", "/", conn=conn)[0] == 200
        clients.append((s, conn, owner_of(s, pids)))
    victim = clients[0][2]
    os.kill(victim, signal.SIGKILL)

    def dead() -> bool:  # gone, or a zombie until the master reaps it
        try:
            return Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True

    # a request the victim held when it was killed is lost with it (nothing can answer it);
    # every connection made from then on is answered, before and after the respawn
    wait_for(dead)
    hammer = Hammer(hw.port)
    wait_for(lambda: len(hw.worker_pids()) == 2 and victim not in hw.worker_pids())
    for s, conn, owner in clients:
        if owner != victim:  # other connections are unaffected
            assert exchange(s, "GET", "/", conn=conn)[0] == 200
        s.close()
    wait_for(lambda: hammer.ok > 20)
    hammer.finish()
    assert hammer.failures == []
    assert "died unexpectedly" in hw.logs()


def test_ttin_ttou_change_the_worker_count(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(basic(b), workers=1)
    hw.signal(signal.SIGTTIN)
    wait_for(lambda: len(hw.worker_pids()) == 2)
    hw.signal(signal.SIGTTOU)
    wait_for(lambda: len(hw.worker_pids()) == 1)
    assert request(hw.port, "GET", "/")[0] == 200


def test_worker_boot_failure_stops_the_master(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    config = {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service("https://127.0.0.1:1")},
        },
        "serversTransport": {"rootCAs": [str(bad_ca)]},
    }
    hw = make_hopwire(config, start=False)
    hw.start(wait=False)
    assert hw.proc.wait(30) == 1  # no fork loop
    assert "failed to start" in hw.logs()


def test_sd_notify(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    b = make_backend()
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    hw = make_hopwire(basic(b), env={"NOTIFY_SOCKET": path})
    messages = [sock.recv(4096).decode()]
    assert "READY=1" in messages[0]
    hw.signal(signal.SIGHUP)
    messages.append(sock.recv(4096).decode())
    messages.append(sock.recv(4096).decode())
    assert "RELOADING=1" in messages[1] and "READY=1" in messages[2]
    hw.signal(signal.SIGTERM)
    assert "STOPPING=1" in sock.recv(4096).decode()
    assert hw.proc.wait(15) == 0
    sock.close()


def test_usr1_reopens_the_log_file(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    b = make_backend()
    log = tmp_path / "app.log"
    hw = make_hopwire(basic(b, log={"filePath": str(log)}))
    wait_for(lambda: log.exists() and "serving" in log.read_text())
    log.rename(tmp_path / "app.log.1")
    hw.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists())
    hw.signal(signal.SIGHUP)  # something to log
    wait_for(lambda: "reloaded" in log.read_text())


def test_check_reports_every_kind_of_bad_config(tmp_path: Path) -> None:
    cases = {
        "workers: many\n": 'workers: "many" is not valid: expected an integer',
        "entryPoints: {web: {address: 'nope'}}\n": "entryPoints.web.address",
        "entryPoints: {web: {adress: ':80'}}\n": "did you mean 'address'?",
        "http: {routers: {r: {rule: 'Host(`a`', service: s}}, services: {s: {loadBalancer: "
        "{servers: [{url: 'http://a'}]}}}}\n": "http.routers.r.rule",
        "http: {routers: {r: {rule: 'Host(`a`)', service: missing}}}\n": "'missing' is not a service",
        "http: {services: {s: {loadBalancer: {servers: [{url: 'ftp://a'}]}}}}\n": "http.services.s.loadBalancer.servers[0].url",
        "http: {services: {s: {loadBalancer: {servers: []}}}}\n": "at least one server",
        "http: {services: {s: {loadBalancer: {servers: [{url: 'http://a'}], "
        "strategy: random}}}}\n": "expected one of wrr, p2c",
        "entryPoints: {web: {address: ':80', transport: {respondingTimeouts: "
        "{readTimeout: soon}}}}\n": "readTimeout",
        "ping: {entryPoint: nowhere}\n": "ping.entryPoint",
        "entryPoints: {a: {address: ':9'}, b: {address: ':9'}}\n": "already used",
        "http: {routers: {r: {rule: 'Hots(`a`)', service: s}}, services: {s: {loadBalancer: "
        "{servers: [{url: 'http://a'}]}}}}\n": "unknown matcher 'Hots'",
        "http: {services: {s: {loadBalancer: {servers: [{url: 'http://a'}], "
        "healthCheck: {path: /h, interval: 0}}}}}\n": "interval",
        "log: {level: LOUD}\n": "log.level",
    }
    for text, expected in cases.items():
        path = tmp_path / "bad.yml"
        path.write_text(text)
        out = subprocess.run(
            [sys.executable, "-m", "hopwire", "--config", str(path), "--check"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert out.returncode == 2, (text, out.stdout, out.stderr)
        assert expected in out.stderr, (text, out.stderr)
    ok = tmp_path / "ok.toml"
    ok.write_text('[entryPoints.web]\naddress = ":8080"\n')
    out = subprocess.run(
        [sys.executable, "-m", "hopwire", "--config", str(ok), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("pattern", "module"),
    [("_head*.so", "hopwire.http._head"), ("_context*.so", "hopwire.telemetry._context")],
)
def test_without_the_compiled_request_path_hopwire_does_not_start(
    tmp_path: Path, pattern: str, module: str
) -> None:
    """An install where _head.c or _context.c was not compiled: hopwire stops at once (exit 1)
    naming the module and what the build needs; there is no interpreted stand-in for the
    request path."""
    import shutil

    import hopwire

    tree = tmp_path / "server"
    shutil.copytree(
        Path(hopwire.__file__).parent, tree / "hopwire", ignore=shutil.ignore_patterns(pattern)
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-m", "hopwire", "--check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 1, out
    assert module in out.stderr and "gcc" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    version = subprocess.run(
        [sys.executable, "-m", "hopwire", "--version"], capture_output=True, text=True, check=True
    )
    assert "head scans: c (compiled" in version.stdout
    assert "trace context: c (compiled" in version.stdout
