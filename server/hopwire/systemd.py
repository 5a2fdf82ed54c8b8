"""sd_notify(3) without libsystemd: one datagram per state change to $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("hopwire.systemd")


class Notifier:
    def __init__(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + path[1:]) if path.startswith("@") else path
        self.sock: socket.socket | None = None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog = (
            (int(usec) / 1e6 / 2) if usec.isdigit() and pid in ("", str(os.getpid())) else 0.0
        )
        if self.address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def notify(self, *states: str) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendto("\n".join(states).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)


SD_LISTEN_FDS_START = 3


def listen_fds() -> dict[str, socket.socket]:
    """The listening sockets systemd passed (socket activation, sd_listen_fds(3)), by their
    ``FileDescriptorName=``; empty when none were passed to this process.  The variables are
    removed so that nothing started later takes them for its own."""
    env = os.environ
    count, pid = env.get("LISTEN_FDS", ""), env.get("LISTEN_PID", "")
    names = env.get("LISTEN_FDNAMES", "")
    for var in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(var, None)
    if not count.isdigit() or pid != str(os.getpid()):
        return {}
    given = names.split(":") if names else []
    sockets: dict[str, socket.socket] = {}
    for i in range(int(count)):
        fd = SD_LISTEN_FDS_START + i
        name = given[i] if i < len(given) else "unknown"
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        problem = ""
        if sock.type != socket.SOCK_STREAM:
            problem = "not a stream socket"
        elif name in sockets:
            problem = "a second socket of that name"
        if problem:
            sock.close()
            raise ValueError(f"LISTEN_FDNAMES: fd {fd} ({name}) is {problem}")
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets[name] = sock
    return sockets
