"""Certificates: read and checked from their files, a self-signed default made when none
is configured, and the store that finds the one whose names match a server name.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hopwire.tls")


class TLSError(Exception):
    """Every problem found in the TLS configuration, as ``key: message`` strings."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Certificate:
    cert_file: str
    key_file: str
    cn: str
    sans: tuple[str, ...]  # DNS names and IP addresses, lower case
    serial: str  # hex
    not_after: float  # Unix time

    @property
    def names(self) -> tuple[str, ...]:
        """The names it answers for: its SANs, else its CN (as Go and Traefik do)."""
        return self.sans or ((self.cn.lower(),) if self.cn else ())


def read_certificate(cert_file: str, key_file: str, key: str) -> Certificate:
    """Read and check a PEM certificate (chain) and its key; raise TLSError naming the file."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        with open(cert_file, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TLSError([f"{key}.certFile: {cert_file!r}: {exc.strerror or exc}"])
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TLSError([f"{key}.certFile: {cert_file!r} is not a PEM certificate ({exc})"])
    if not os.path.isfile(key_file):
        raise TLSError([f"{key}.keyFile: {key_file!r} is not a readable file"])
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise TLSError(
            [f"{key}.keyFile: {key_file!r} is not the PEM key of {cert_file!r} ({reason})"]
        )
    leaf = chain[0]
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    sans: list[str] = []
    try:
        ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [n.lower() for n in ext.get_values_for_type(x509.DNSName)]
        sans += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return Certificate(
        cert_file,
        key_file,
        str(cns[0].value) if cns else "",
        tuple(sans),
        format(leaf.serial_number, "x"),
        leaf.not_valid_after_utc.timestamp(),
    )


def self_signed(directory: str) -> Certificate:
    """A default certificate made at start, as Traefik does (ECDSA P-256, one year)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HOPWIRE DEFAULT CERT")])
    now = datetime.datetime.now(datetime.UTC)
    host = os.urandom(16).hex() + ".hopwire.default"
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file = os.path.join(directory, "default.crt")
    key_file = os.path.join(directory, "default.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return read_certificate(cert_file, key_file, "tls.stores.default.defaultCertificate")


def _wildcard_key(name: str) -> str | None:
    """'a.b.example' -> '*.b.example' (a wildcard covers exactly one label)."""
    head, dot, rest = name.partition(".")
    return "*." + rest if dot and head else None


class Store:
    """The certificates and the contexts of one generation, shared by its entrypoints."""

    def __init__(
        self,
        certificates: list[Certificate],
        default: Certificate,
        options: Mapping[str, Any],
        contexts: dict[tuple[str, int], Any],
    ):
        self.certificates = certificates
        self.default = default
        self.options = options
        self.contexts = contexts  # (options name, certificate index; -1 the default) -> ctx
        self.strict = {n for n, o in options.items() if o.sniStrict}
        self.exact: dict[str, int] = {}
        self.wildcard: dict[str, int] = {}
        for i, cert in enumerate(certificates):
            for name in cert.names:
                table = self.wildcard if name.startswith("*.") else self.exact
                table.setdefault(name, i)

    def certificate_index(self, sni: str | None) -> int | None:
        """The certificate for a server name (its index), or None for the default one."""
        if not sni:
            return None
        i = self.exact.get(sni)
        if i is None:
            wild = _wildcard_key(sni)
            if wild is not None:
                i = self.wildcard.get(wild)
        return i

    def all_certificates(self) -> list[Certificate]:
        return [*self.certificates, self.default]
