"""Building blocks of the body middlewares: Accept-Encoding choice, media types, status
ranges, the streamed coders against their decoders, response head edits, and the Redis bucket
script against a real redis-server."""

from __future__ import annotations

import gzip
import shutil
import socket
import subprocess
import time
from types import SimpleNamespace
from typing import Any

import pytest

from hopwire.middlewares.bodies import CODERS, Compress, head_value, media_type, with_length
from hopwire.middlewares.retry import in_ranges, status_ranges


def compress(**cfg: Any) -> Compress:
    base = {
        "encodings": ("gzip", "br", "zstd"),
        "defaultEncoding": "",
        "minResponseBodyBytes": 1024,
        "excludedContentTypes": (),
        "includedContentTypes": (),
    }
    return Compress(SimpleNamespace(**{**base, **cfg}))


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ([b"gzip, br"], "gzip"),  # equal weights: the configured order
        ([b"br, gzip"], "gzip"),
        ([b"zstd;q=0.5, br"], "br"),
        ([b"gzip;q=0, identity"], "identity"),
        ([b"deflate"], ""),  # nothing acceptable: as it is
        ([b""], "identity"),
        ([b"*"], "gzip"),
        ([b"br;q=0.2", b"zstd;q=0.9"], "zstd"),  # several fields
    ],
)
def test_accept_encoding_is_chosen_as_traefik_does(accept: list[bytes], chosen: str) -> None:
    assert compress().choose(accept) == chosen


def test_wildcard_takes_the_default_encoding() -> None:
    assert compress(defaultEncoding="br").choose([b"*"]) == "br"


def test_media_types() -> None:
    assert media_type(b"Text/HTML; Charset=UTF-8") == ("text/html", {"charset": "UTF-8"})
    assert media_type("application/json") == ("application/json", {})
    assert media_type("nonsense") is None
    assert media_type("text/html; broken") is None


def test_status_ranges() -> None:
    ranges = status_ranges(("500-504", "404,418"))
    assert [s for s in (403, 404, 418, 500, 504, 505) if in_ranges(s, ranges)] == [
        404,
        418,
        500,
        504,
    ]
    with pytest.raises(ValueError):
        status_ranges(("599-500",))
    with pytest.raises(ValueError):
        status_ranges(("abc",))


@pytest.mark.parametrize("encoding", sorted(CODERS))
def test_streamed_coders_round_trip(encoding: str) -> None:
    data = [bytes([i % 251]) * (1000 + 37 * i) for i in range(40)]
    coder = CODERS[encoding]()
    out = b"".join(coder.piece(d) for d in data) + coder.last()
    if encoding == "gzip":
        back = gzip.decompress(out)
    elif encoding == "br":
        import brotli

        back = bytes(brotli.decompress(out))
    else:
        import zstandard

        back = zstandard.ZstdDecompressor().decompressobj().decompress(out)
    assert back == b"".join(data)


def test_every_piece_can_be_decoded_as_it_arrives() -> None:
    """A streamed response is readable piece by piece (each piece is flushed)."""
    import zlib

    coder = CODERS["gzip"]()
    inflate = zlib.decompressobj(31)
    for piece in (b"first", b"second" * 100):
        assert inflate.decompress(coder.piece(piece)) == piece


def test_response_head_edits() -> None:
    parts = [b"HTTP/1.1 200 OK\r\n"]
    parts += (b"Content-Length", b": ", b"12", b"\r\n", b"X-A", b": ", b"1", b"\r\n")
    assert head_value(parts, b"x-a") == b"1"
    edited = with_length(parts, 99)
    assert head_value(edited, b"content-length") == b"99"
    assert b"".join(edited).count(b"Content-Length") == 0  # replaced, written lower-case


@pytest.fixture(scope="module")
def redis_port() -> Any:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is a test dependency (tests/install-deps.sh installs it)"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def test_the_bucket_script_gives_burst_then_waits_then_refuses(redis_port: int) -> None:
    import redis

    from hopwire.middlewares.redislimit import BUCKET

    client = redis.Redis(port=redis_port)
    script = client.register_script(BUCKET)
    now = 1_000_000_000
    rate = 10 / 1e6  # 10 per second, per microsecond
    max_delay = 50_000  # 50 ms

    def ask(at: int) -> tuple[bytes, float]:
        ok, delay = script(keys=["rl:t:a"], args=[repr(rate), 3, 2, at, max_delay])
        return ok, float(delay)

    assert [ask(now)[0] for _ in range(3)] == [b"true"] * 3  # the burst
    ok, delay = ask(now + 50_000)  # half a token later: waits the other half
    assert ok == b"true" and delay == pytest.approx(50_000)
    assert ask(now + 50_000)[0] == b"false"  # would wait 150 ms: refused, nothing taken
    ok, delay = ask(now + 200_000)
    assert ok == b"true" and delay == pytest.approx(0)
    assert client.ttl("rl:t:a") in (1, 2)  # expires when unused
