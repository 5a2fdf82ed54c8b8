"""What the access log and the spans say of a TLS connection, with Traefik's formats."""

from __future__ import annotations

import logging
from typing import Any

from hopwire.http.tls.options import TLS_VERSIONS, iana_names

log = logging.getLogger("hopwire.tls")


def tls_fields(ssl_object: Any) -> tuple[str, str, str | None]:
    """(TLSVersion, TLSCipher, TLSClientSubject) with Traefik's formats: "1.3", the IANA name
    of the suite, the client certificate's subject as RFC 4514 text (None without one)."""
    version = TLS_VERSIONS.get(ssl_object.version() or "", "unknown")
    cipher = ssl_object.cipher()
    name = iana_names().get(cipher[0], "unknown") if cipher else "unknown"
    subject = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        from cryptography import x509

        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return version, name, subject
