"""The server name of a ClientHello, read from the bytes the listener peeked at, before
OpenSSL sees them.
"""

from __future__ import annotations

import logging

log = logging.getLogger("hopwire.tls")


HANDSHAKE = 0x16


RECORD_MAX = 5 + 16384 + 2048  # a record header and the largest (compressed) fragment


def record_length(data: bytes) -> int:
    """Bytes of the first TLS record (header included), or 0 if its header is incomplete."""
    if len(data) < 5:
        return 0
    return 5 + int.from_bytes(data[3:5], "big")


def client_hello_sni(data: bytes) -> str | None:
    """The server name of the ClientHello in the first record, lower case; None if it has
    none.  Raise ValueError if the record is not a ClientHello."""
    if len(data) < 9 or data[0] != HANDSHAKE or data[5] != 1:
        raise ValueError("not a ClientHello")
    end = min(len(data), record_length(data))
    hello_end = min(end, 9 + int.from_bytes(data[6:9], "big"))
    pos = 9 + 2 + 32  # version, random
    if pos >= hello_end:
        raise ValueError("truncated ClientHello")
    pos += 1 + data[pos]  # session id
    pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # cipher suites
    if pos >= hello_end:
        raise ValueError("truncated ClientHello")
    pos += 1 + data[pos]  # compression methods
    if pos + 2 > hello_end:
        return None  # no extensions
    ext_end = min(hello_end, pos + 2 + int.from_bytes(data[pos : pos + 2], "big"))
    pos += 2
    while pos + 4 <= ext_end:
        kind = int.from_bytes(data[pos : pos + 2], "big")
        size = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 4
        if kind == 0:  # server_name: a list of (type, name); type 0 is a host name
            body = data[pos : pos + size]
            at = 2
            while at + 3 <= len(body):
                name_type = body[at]
                length = int.from_bytes(body[at + 1 : at + 3], "big")
                name = body[at + 3 : at + 3 + length]
                if name_type == 0:
                    text = name.decode("ascii", "replace").lower().rstrip(".")
                    return text or None
                at += 3 + length
            return None
        pos += size
    return None
