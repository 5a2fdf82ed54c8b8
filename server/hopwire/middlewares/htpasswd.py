"""Checking htpasswd secrets, as Traefik does (go-http-auth): bcrypt (``$2y$``, ``$2a$``,
``$2b$``), SHA1 (``{SHA}``), and MD5-crypt (``$apr1$`` and ``$1$``).  bcrypt comes from the
``bcrypt`` package; MD5-crypt (Poul-Henning Kamp's algorithm) is written out here, since the
standard library has no crypt on 3.13 and no apr1 variant at all."""

from __future__ import annotations

import base64
import hashlib
import hmac

ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def kind(secret: str) -> str | None:
    """The hash type of an htpasswd secret, None when hopwire cannot check it."""
    if secret.startswith(("$2y$", "$2a$", "$2b$")):
        return "bcrypt"
    if secret.startswith("{SHA}"):
        return "sha1"
    if secret.startswith(("$apr1$", "$1$")):
        return "md5-crypt"
    return None


def md5_crypt(password: bytes, salt: bytes, magic: bytes) -> bytes:
    salt = salt[:8]
    final = hashlib.md5(password + salt + password).digest()
    ctx = password + magic + salt
    n = len(password)
    while n > 0:
        ctx += final[: min(16, n)]
        n -= 16
    i = len(password)
    while i:
        ctx += b"\x00" if i & 1 else password[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()
    for i in range(1000):
        c = password if i & 1 else final
        if i % 3:
            c += salt
        if i % 7:
            c += password
        c += final if i & 1 else password
        final = hashlib.md5(c).digest()
    out = bytearray()

    def to64(value: int, count: int) -> None:
        for _ in range(count):
            out.append(ITOA64[value & 0x3F])
            value >>= 6

    for x, y, z in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        to64((final[x] << 16) | (final[y] << 8) | final[z], 4)
    to64(final[11], 2)
    return magic + salt + b"$" + bytes(out)


def check(password: str, secret: str) -> bool:
    """Whether ``password`` matches the htpasswd ``secret`` (constant-time comparisons)."""
    pw = password.encode("utf-8")
    kind_ = kind(secret)
    if kind_ == "bcrypt":
        import bcrypt

        try:
            return bcrypt.checkpw(pw, secret.encode("ascii"))
        except ValueError:
            return False
    if kind_ == "sha1":
        digest = base64.b64encode(hashlib.sha1(pw).digest()).decode()
        return hmac.compare_digest(digest, secret[5:])
    if kind_ == "md5-crypt":
        magic = b"$apr1$" if secret.startswith("$apr1$") else b"$1$"
        salt = secret[len(magic) :].split("$", 1)[0].encode("ascii")
        return hmac.compare_digest(md5_crypt(pw, salt, magic), secret.encode("ascii"))
    return False
