"""The fuzz targets: one input through the in-process request path (tests/fuzz/world.py).

    request   the input is what a client sends: its first byte chooses how the rest is cut
              into reads and whether the client half-closes; the backend answers well
    response  the input is what the backend answers to a fixed GET (or HEAD, by the first
              byte); a malformed answer must be a 502 and that backend connection dropped

Run by ``python -m tests.fuzz.run`` (``make fuzz``), which gives atheris the seed corpus made
from tests/corpus/requests and turns what it finds into corpus files.
"""

from __future__ import annotations

import h11

from tests.fuzz.world import OK_RESPONSE, Violation, World

_worlds: dict[str, World] = {}


def _world(kind: str) -> World:
    world = _worlds.get(kind)
    if world is None:
        world = _worlds[kind] = World()
    return world


def split(data: bytes, flags: int) -> list[bytes]:
    """Cut ``data`` into reads: whole (0), every N bytes (1-6: N = 1, 2, 3, 7, 16, 61), or at
    each CRLF (7)."""
    mode = flags & 0x07
    if mode == 0 or not data:
        return [data]
    if mode == 7:
        parts = data.split(b"\r\n")
        return [p + b"\r\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    size = (1, 2, 3, 7, 16, 61)[mode - 1]
    return [data[i : i + size] for i in range(0, len(data), size)]


def request_input(data: bytes) -> None:
    if not data:
        return
    world = _world("request")
    world.response = OK_RESPONSE
    world.run(split(data[1:], data[0]), eof=bool(data[0] & 0x80))


def response_input(data: bytes) -> None:
    if not data:
        return
    head = bool(data[0] & 0x01)
    method = b"HEAD" if head else b"GET"
    world = _world("response")
    world.response = data[1:]
    world.run([method + b" /r HTTP/1.1\r\nHost: a\r\n\r\n"], eof=False)
    # what a strict parser makes of the backend's answer: a malformed first head (RELIABILITY
    # 22) must be a 502 with the connection dropped; bytes after a complete response (24) must
    # drop it too.  Past the first head, llhttp and h11 differ in leniency (empty lines between
    # messages, for one) in ways that do not make a response ambiguous: no claim is made there.
    h = h11.Connection(h11.CLIENT)
    h.send(h11.Request(method=method, target="/r", headers=[("host", "a")]))
    h.send(h11.EndOfMessage())
    h.receive_data(data[1:])
    head_ok = False
    extra = False
    try:
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                break
            if isinstance(event, h11.InformationalResponse | h11.Response):
                head_ok = True
            if isinstance(event, h11.EndOfMessage):
                extra = bool(h.trailing_data[0].strip(b"\r\n"))
                break
    except h11.RemoteProtocolError:
        pass
    statuses = [ex.status for ex in world.answered()]
    pooled = world.pooled
    if not head_ok and pooled:
        raise Violation(f"connection pooled after a malformed head: {data[1:200]!r}")
    if not head_ok and statuses and statuses[0] not in (502,) and statuses[0] >= 200:
        raise Violation(f"{statuses[0]} for a malformed head: {data[1:200]!r}")
    if extra and pooled:
        raise Violation(f"connection pooled with bytes after the response: {data[1:200]!r}")
    if statuses and statuses[0] == 502 and pooled:
        raise Violation("connection pooled after a 502")
