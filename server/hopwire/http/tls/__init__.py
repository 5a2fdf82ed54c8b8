"""TLS termination: certificates, Traefik's TLS options, and the context each handshake uses.

Built once per config generation in the master, before the workers fork (``build``): every
certificate is read and checked, and one ``ssl.SSLContext`` is made per (options, certificate)
pair, so that a reload swaps certificates for new handshakes while open connections keep
theirs, and a bad file is found before any worker starts.

A handshake's context is chosen *before* OpenSSL sees the ClientHello (``client_hello_sni``
reads the server name from the bytes the listener peeked at): OpenSSL can switch a
connection's certificate from the SNI callback but not its protocol versions or client
verification, and Traefik chooses the options of a handshake by matching its SNI against the
TLS routers' ``Host()`` rules.  The certificate is the one whose SANs (or CN, when it has no
SAN) match the SNI, wildcards included; else the default one, or no handshake (``sniStrict``).

The package, by job:

    options       versions, curves, suites; the SSLContext of (options, certificate)
    certificates  read and checked; the self-signed default; the store by server name
    selection     the options a handshake gets, from the TLS routers' Host() rules
    generation    check and build the TLS of one config generation (the master, pre-fork)
    hello         the server name of a peeked ClientHello
    fields        the TLS fields of the access log and the spans
"""

from hopwire.http.tls.certificates import (
    Certificate,
    Store,
    TLSError,
    read_certificate,
    self_signed,
)
from hopwire.http.tls.fields import tls_fields
from hopwire.http.tls.generation import all_options, build, check
from hopwire.http.tls.hello import HANDSHAKE, RECORD_MAX, client_hello_sni, record_length
from hopwire.http.tls.options import (
    ALPN,
    CLIENT_AUTH_TYPES,
    CURVES,
    DEFAULT_OPTIONS,
    SUITES,
    TLS_VERSIONS,
    VERSIONS,
    check_options,
    make_context,
    openssl_ciphers,
)
from hopwire.http.tls.selection import Chooser, chooser_for, entrypoint_tls, needs_tls, rule_hosts

__all__ = [
    "ALPN",
    "CLIENT_AUTH_TYPES",
    "CURVES",
    "DEFAULT_OPTIONS",
    "HANDSHAKE",
    "RECORD_MAX",
    "SUITES",
    "TLS_VERSIONS",
    "VERSIONS",
    "Certificate",
    "Chooser",
    "Store",
    "TLSError",
    "all_options",
    "build",
    "check",
    "check_options",
    "chooser_for",
    "client_hello_sni",
    "entrypoint_tls",
    "make_context",
    "needs_tls",
    "openssl_ciphers",
    "read_certificate",
    "record_length",
    "rule_hosts",
    "self_signed",
    "tls_fields",
]
