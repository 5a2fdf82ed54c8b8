"""The fuzz targets: one input through the in-process request path (tests/fuzz/world.py).

    request   the input is what a client sends: its first byte chooses how the rest is cut
              into reads and whether the client half-closes; the backend answers well
    response  the input is what the backend answers to a fixed GET (or HEAD, by the first
              byte); a malformed answer must be a 502 and that backend connection dropped
    h2        the input is the frames an HTTP/2 client sends after the h2c preface (cut into
              reads by the first byte, as for request); whatever they are, nothing raises and
              nothing is logged at ERROR, and what reaches the backend is a valid HTTP/1.1
              request

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


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_input(data: bytes) -> None:
    if not data:
        return
    world = _world("h2")
    world.response = OK_RESPONSE
    world.run([H2_PREFACE, *split(data[1:], data[0])], eof=bool(data[0] & 0x80))


def h2_seeds() -> list[bytes]:
    """Frames of well-formed HTTP/2 requests (python-hyper's h2 as the client): the h2 target's
    seed corpus, each to be mutated."""
    import h2.config
    import h2.connection

    out = []
    cases: list[tuple[list[tuple[str, str]], bytes | None]] = [
        ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")], None),
        (
            [
                (":method", "POST"),
                (":path", "/up?x=1"),
                (":scheme", "http"),
                (":authority", "a"),
                ("content-length", "5"),
            ],
            b"hello",
        ),
        (
            [
                (":method", "PUT"),
                (":path", "/p"),
                (":scheme", "https"),
                (":authority", "a:8"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("x-long", "v" * 300),
            ],
            b"body of unknown length",
        ),
    ]
    for headers, body in cases:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        conn.send_headers(1, headers, end_stream=body is None)
        if body is not None:
            conn.send_data(1, body, end_stream=True)
        conn.send_headers(3, headers[:4], end_stream=True)
        conn.reset_stream(3)
        conn.ping(b"12345678")
        frames = conn.data_to_send()[len(H2_PREFACE) :]
        out.append(frames)
    return out


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
