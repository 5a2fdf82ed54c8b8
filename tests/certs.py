"""Certificates made in the test, with ``cryptography``: a CA and the leaves it signs.

``Authority(tmp).leaf("a.test", "*.b.test")`` writes ``<name>.crt`` (leaf then CA: a complete
chain) and ``<name>.key``; ``expired=True`` makes one that ran out yesterday; ``client=True``
makes a client certificate (extendedKeyUsage clientAuth).  Keys are ECDSA P-256, as in the
bench.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Leaf:
    cert: Path
    key: Path
    serial: int
    not_after: datetime.datetime

    def files(self) -> dict[str, str]:
        """As a tls.certificates entry."""
        return {"certFile": str(self.cert), "keyFile": str(self.key)}


class Authority:
    def __init__(self, tmp: Path, name: str = "hopwire test CA"):
        self.tmp = tmp
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.path = tmp / f"{name.replace(' ', '-')}.pem"
        self.path.write_bytes(self.pem)

    def mtls_server(self, leaf: Leaf) -> ssl.SSLContext:
        """A server's context presenting ``leaf`` and requiring a client certificate this
        authority signed."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(leaf.cert, leaf.key)
        ctx.load_verify_locations(cadata=self.pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def leaf(
        self,
        *names: str,
        file: str | None = None,
        cn: str | None = None,
        expired: bool = False,
        client: bool = False,
    ) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=10)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hopwire tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn or (names[0] if names else "leaf")),
            ]
        )
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
        )
        if names:
            sans: list[x509.GeneralName] = []
            for n in names:
                if n.replace(".", "").isdigit():
                    import ipaddress

                    sans.append(x509.IPAddress(ipaddress.ip_address(n)))
                else:
                    sans.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = file or (names[0] if names else "leaf").replace("*", "wildcard")
        cert_path = self.tmp / f"{stem}.crt"
        key_path = self.tmp / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.pem)
        key_path.write_bytes(_key_pem(key))
        return Leaf(cert_path, key_path, serial, end)
