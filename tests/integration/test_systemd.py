"""deploy/systemd: the units as systemd reads them (systemd-analyze), the watchdog fed only
while the workers tick, and socket activation by the real systemd-socket-activate."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT, catch_all, free_port, request, wait_for

UNITS = ROOT / "deploy" / "systemd"
HOPWIRE = Path(sys.executable).parent / "hopwire"
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze (Debian's systemd) missing"
)


def installed_units(tmp_path: Path) -> Path:
    """The units as installed: the only change is where hopwire is (the venv of this run)."""
    for unit in ("hopwire.service", "hopwire.socket"):
        text = (UNITS / unit).read_text().replace("/opt/hopwire/bin/hopwire", str(HOPWIRE))
        (tmp_path / unit).write_text(text)
    return tmp_path


def unit(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_units_verify_without_a_word(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: tests/install-deps.sh"
    where = installed_units(tmp_path)
    out = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(where / "hopwire.service"),
            str(where / "hopwire.socket"),
        ],
        capture_output=True,
        text=True,
    )
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


def security_exposure() -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNITS / "hopwire.service")],
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"Overall exposure level for hopwire.service: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1))


def test_security_exposure_is_low_and_in_the_docs() -> None:
    score = security_exposure()
    assert score <= 2.0
    assert f"exposure **{score}**" in (ROOT / "docs" / "operations.md").read_text()


def test_service_settings() -> None:
    s = unit("hopwire.service")
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["EnvironmentFile"] == ["-/etc/default/hopwire"]
    # graceTimeOut (10 s default) + the span exporters' last flush (at most 8 s)
    assert int(s["TimeoutStopSec"][0]) > 10 + 8
    assert int(s["WatchdogSec"][0]) > 0 and s["RuntimeDirectory"] == ["hopwire"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert s[hardening] == ["yes"]
    assert s["ProtectSystem"] == ["strict"] and s["DynamicUser"] == ["yes"]
    assert s["AmbientCapabilities"] == s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert "@system-service" in s["SystemCallFilter"]
    sock = configparser.ConfigParser(strict=False)
    sock.read(UNITS / "hopwire.socket")
    assert sock["Socket"]["Service"] == "hopwire.service"


def test_watchdog_fed_only_while_every_worker_ticks(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    b = make_backend()
    path = str(tmp_path / "notify.sock")
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listen.bind(path)
    listen.settimeout(5)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"}  # fed every 0.3 s
    hw = make_hopwire({"http": catch_all(b.url)}, env=env)

    def pings(seconds: float) -> int:
        end, count = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            try:
                count += "WATCHDOG=1" in listen.recv(4096).decode()
            except TimeoutError:
                pass
        return count

    listen.settimeout(0.2)
    assert pings(1.5) >= 3
    worker = hw.worker_pids()[0]
    os.kill(worker, signal.SIGSTOP)  # its loop stops ticking (killed only after 30 s)
    try:
        time.sleep(2.5)
        listen.setblocking(False)
        try:
            while listen.recv(4096):  # what was sent before the worker's beat got stale
                pass
        except BlockingIOError:
            listen.settimeout(0.2)
        assert pings(1.5) == 0
        assert "the systemd watchdog is not fed" in hw.logs()
    finally:
        os.kill(worker, signal.SIGCONT)
    try:
        assert pings(1.5) >= 3
    finally:
        listen.close()


def activated(tmp_path: Path, names: str, config: dict[str, Any]) -> tuple[Any, int, int]:
    """hopwire started by systemd-socket-activate, which execs it at the first connection."""
    web, internal = free_port(), free_port()
    path = tmp_path / "hopwire.yml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "activated.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            "systemd-socket-activate",
            "-l",
            f"127.0.0.1:{web}",
            "-l",
            f"127.0.0.1:{internal}",
            f"--fdname={names}",
            sys.executable,
            "-m",
            "hopwire",
            "--config",
            str(path),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    log.close()  # the child has its own copy
    wait_for(lambda: b"Listening on" in (tmp_path / "activated.log").read_bytes(), timeout=5)
    time.sleep(0.2)
    return proc, web, internal


def test_socket_activation_serves_the_sockets_systemd_holds(
    make_backend: Any, tmp_path: Path
) -> None:
    assert shutil.which("systemd-socket-activate"), "systemd-socket-activate missing"
    b = make_backend()
    unused = free_port()
    config = {
        "workers": 2,
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{unused}"},  # replaced by the passed socket
            "internal": {"address": f"127.0.0.1:{free_port()}"},
        },
        "http": catch_all(b.url),
    }
    proc, web, internal = activated(tmp_path, "web:internal", config)
    try:
        # the first connection arrives before hopwire even runs: it waits, it is not refused
        status, _, body = request(web, "GET", "/first", timeout=20)
        assert status == 200 and b.requests[-1][1] == "/first"
        assert request(internal, "GET", "/ping")[0] == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", unused), timeout=1).close()
        logs = (tmp_path / "activated.log").read_text()
        assert "entrypoint web: serving the socket systemd passed" in logs
        proc.send_signal(signal.SIGHUP)  # a reload keeps serving the same sockets
        wait_for(lambda: "reloaded: generation 2" in (tmp_path / "activated.log").read_text())
        assert request(web, "GET", "/after")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_socket_with_an_unknown_name_stops_start_up(make_backend: Any, tmp_path: Path) -> None:
    b = make_backend()
    config = {
        "entryPoints": {"web": {"address": f"127.0.0.1:{free_port()}"}},
        "http": catch_all(b.url),
    }
    proc, web, _ = activated(tmp_path, "websecure:internal", config)
    try:
        socket.create_connection(("127.0.0.1", web), timeout=2).close()  # starts hopwire
        assert proc.wait(20) == 2
        logs = (tmp_path / "activated.log").read_text()
        assert "LISTEN_FDNAMES: websecure names no entrypoint" in logs
    finally:
        if proc.poll() is None:
            proc.kill()
