"""Traefik's TLS options: the protocol versions, curves and cipher suites, and the
``ssl.SSLContext`` one (options, certificate) pair makes; and the client context of a
``tls`` section hopwire dials with (``client_context``).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable
from typing import Any

from hopwire.http.tls.certificates import Certificate

log = logging.getLogger("hopwire.tls")


VERSIONS = {
    "VersionTLS10": ssl.TLSVersion.TLSv1,
    "VersionTLS11": ssl.TLSVersion.TLSv1_1,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}


CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)


# Traefik's (Go's) curve names -> OpenSSL's group names
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}


# Traefik's (IANA) cipher suite names -> their code points; OpenSSL names are looked up by code
SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": 0x0005,
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": 0x000A,
    "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002F,
    "TLS_RSA_WITH_AES_256_CBC_SHA": 0x0035,
    "TLS_RSA_WITH_AES_128_CBC_SHA256": 0x003C,
    "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009C,
    "TLS_RSA_WITH_AES_256_GCM_SHA384": 0x009D,
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": 0xC007,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xC009,
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": 0xC00A,
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": 0xC011,
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": 0xC012,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013,
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": 0xC014,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": 0xC023,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": 0xC027,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F,
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xC030,
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": 0xCCA8,
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA8,
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": 0xCCA9,
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_FALLBACK_SCSV": 0x5600,
}


TLS13_SUITES = frozenset({0x1301, 0x1302, 0x1303})
SUITE_NAMES = {code: name for name, code in reversed(SUITES.items())}


# without cipherSuites: ECDHE with an AEAD only (TLS 1.3 suites are OpenSSL's, as in Go)
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


ALPN = ("h2", "http/1.1")  # the protocols hopwire speaks, offered in alpnProtocols' order


DEFAULT_OPTIONS = "default"


TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


def client_context(tls: Any) -> ssl.SSLContext:
    """The context of a client ``tls`` section (forwardAuth, rateLimit's Redis, OTLP/HTTP):
    ``ca`` the only roots trusted (else the system's), ``cert``/``key`` shown when asked,
    ``insecureSkipVerify`` no verification at all."""
    ctx = ssl.create_default_context(cafile=tls.ca or None)
    if tls.cert:
        ctx.load_cert_chain(tls.cert, tls.key or None)
    if tls.insecureSkipVerify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def openssl_ciphers(names: Iterable[str], key: str, errors: list[str]) -> str:
    """Traefik's cipher suite names as an OpenSSL cipher string (TLS 1.2 and below; as in Go,
    the TLS 1.3 suites are not configurable and are skipped)."""
    by_code = {c["id"] & 0xFFFF: c["name"] for c in _openssl_suites()}
    chosen = []
    for i, name in enumerate(names):
        code = SUITES.get(name)
        if code is None:
            errors.append(f"{key}[{i}]: unknown cipher suite {name!r}")
        elif code in TLS13_SUITES or code == 0x5600:
            continue
        elif code not in by_code:
            errors.append(f"{key}[{i}]: {name!r} is not available in {ssl.OPENSSL_VERSION}")
        else:
            chosen.append(by_code[code])
    return ":".join(chosen)


def make_context(options: Any, cert: Certificate | None, key: str, errors: list[str]) -> Any:
    """One server context for one TLS options section and one certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = VERSIONS[options.minVersion]
    if options.maxVersion:
        ctx.maximum_version = VERSIONS[options.maxVersion]
    ciphers = (
        openssl_ciphers(options.cipherSuites, f"{key}.cipherSuites", errors)
        if options.cipherSuites
        else DEFAULT_CIPHERS
    )
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            errors.append(f"{key}.cipherSuites: {exc}")
    for curve in options.curvePreferences:
        try:
            ctx.set_ecdh_curve(CURVES[curve])
        except (ValueError, ssl.SSLError) as exc:
            errors.append(f"{key}.curvePreferences: {curve!r}: {exc}")
    spoken = [p for p in options.alpnProtocols if p in ALPN]
    if spoken:
        ctx.set_alpn_protocols(spoken)
    if options.disableSessionTickets:
        ctx.options |= ssl.OP_NO_TICKET
    auth = options.clientAuth
    if auth.caFiles:
        for i, ca in enumerate(auth.caFiles):
            try:
                ctx.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as exc:
                errors.append(f"{key}.clientAuth.caFiles[{i}]: {ca!r}: {exc}")
    kind = auth.clientAuthType
    if kind == "RequireAndVerifyClientCert" or (kind == "RequireAnyClientCert" and auth.caFiles):
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif kind == "VerifyClientCertIfGiven" or (kind == "RequestClientCert" and auth.caFiles):
        ctx.verify_mode = ssl.CERT_OPTIONAL
    if cert is not None:
        ctx.load_cert_chain(cert.cert_file, cert.key_file)
    return ctx


def check_options(name: str, options: Any) -> list[str]:
    """Problems of one tls.options section that do not need the files."""
    key = f"tls.options.{name}"
    errors = []
    if len(options.curvePreferences) > 1:
        errors.append(
            f"{key}.curvePreferences: {list(options.curvePreferences)}: Python 3.11's ssl "
            "sets a single curve; give one"
        )
    for i, curve in enumerate(options.curvePreferences):
        if curve not in CURVES:
            errors.append(
                f"{key}.curvePreferences[{i}]: unknown curve {curve!r} (expected one of "
                f"{', '.join(CURVES)})"
            )
    if options.maxVersion and VERSIONS[options.maxVersion] < VERSIONS[options.minVersion]:
        errors.append(f"{key}.maxVersion: {options.maxVersion} is below minVersion")
    if options.cipherSuites:
        openssl_ciphers(options.cipherSuites, f"{key}.cipherSuites", errors)
    auth = options.clientAuth
    if not auth.caFiles and auth.clientAuthType in (
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ):
        reason = (
            "Python's ssl cannot require a certificate without verifying it"
            if auth.clientAuthType == "RequireAnyClientCert"
            else "client certificates are verified against them"
        )
        errors.append(
            f"{key}.clientAuth.caFiles: required with clientAuthType "
            f"{auth.clientAuthType} ({reason})"
        )
    for i, ca in enumerate(auth.caFiles):
        if not os.path.isfile(ca):
            errors.append(f"{key}.clientAuth.caFiles[{i}]: {ca!r} is not a readable file")
    return errors


def _default_options() -> Any:
    from hopwire.config.schema import TLSOptions

    return TLSOptions()


def _explain(name: str, options: Any) -> None:
    """Say at start what hopwire does differently from Traefik for these options."""
    key = f"tls.options.{name}"
    others = [p for p in options.alpnProtocols if p not in ALPN]
    if others:
        spoken = [p for p in options.alpnProtocols if p in ALPN]
        log.info(
            "%s.alpnProtocols: hopwire speaks h2 and http/1.1: offers %s, not %s",
            key,
            ", ".join(spoken) or "nothing",
            ", ".join(others),
        )
    auth = options.clientAuth
    if auth.clientAuthType == "RequestClientCert":
        if auth.caFiles:
            log.warning(
                "%s.clientAuth: RequestClientCert verifies a given certificate against caFiles "
                "(Python's ssl cannot request one without verifying it; stricter than Traefik)",
                key,
            )
        else:
            log.warning(
                "%s.clientAuth: RequestClientCert without caFiles requests no certificate "
                "(Python's ssl cannot request one without verifying it)",
                key,
            )
    elif auth.clientAuthType == "RequireAnyClientCert":
        log.warning(
            "%s.clientAuth: RequireAnyClientCert requires a certificate signed by caFiles "
            "(Python's ssl cannot accept one unverified; stricter than Traefik)",
            key,
        )


_SUITES: list[Any] = []


_IANA: dict[str, str] = {}


def _openssl_suites() -> list[Any]:
    """Every cipher suite this OpenSSL knows (``SSLContext.get_ciphers``), read once."""
    if not _SUITES:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        probe.set_ciphers("ALL:@SECLEVEL=0")
        _SUITES.extend(probe.get_ciphers())
    return _SUITES


def iana_names() -> dict[str, str]:
    """OpenSSL's cipher suite names -> Traefik's (IANA) ones."""
    if not _IANA:
        for c in _openssl_suites():
            iana = SUITE_NAMES.get(c["id"] & 0xFFFF)
            if iana is not None:
                _IANA[c["name"]] = iana
    return _IANA
