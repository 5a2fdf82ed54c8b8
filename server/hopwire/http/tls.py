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
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
ALPN = "http/1.1"  # the one protocol hopwire speaks
DEFAULT_OPTIONS = "default"
TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


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
    if ALPN in options.alpnProtocols:
        ctx.set_alpn_protocols([ALPN])
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


class Chooser:
    """One TLS entrypoint's choice of context: options by SNI (its TLS routers' Host rules),
    then the certificate by SNI.  Decisions are cached per server name, bounded."""

    CACHE_MAX = 10_000

    def __init__(
        self,
        store: Store,
        hosts: Mapping[str, str],
        patterns: list[tuple[re.Pattern[str], str]],
        default: str,
    ):
        self.store = store
        self.hosts = hosts  # exact host -> options name
        self.patterns = patterns  # HostRegexp -> options name
        self.default = default  # the entrypoint's http.tls.options, else "default"
        self.cache: dict[str | None, Any] = {}

    def options_for(self, sni: str | None) -> str:
        if sni:
            name = self.hosts.get(sni)
            if name is not None:
                return name
            for pattern, name in self.patterns:
                if pattern.search(sni):
                    return name
        return self.default

    def context(self, sni: str | None) -> Any:
        """The context of a handshake, or None when sniStrict refuses it."""
        try:
            return self.cache[sni]
        except KeyError:
            pass
        store = self.store
        options = self.options_for(sni)
        index = store.certificate_index(sni)
        if index is None and options in store.strict:
            ctx = None
        else:
            ctx = store.contexts[(options, -1 if index is None else index)]
        if len(self.cache) >= self.CACHE_MAX:
            self.cache.clear()
        self.cache[sni] = ctx
        return ctx


def rule_hosts(rule: str) -> tuple[list[str], list[str]]:
    """The hosts a router's rule names in ``Host()`` and ``HostRegexp()`` (outside a ``!``)."""
    from hopwire.routing import And, Call, Or, parse_rule

    hosts: list[str] = []
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Call):
            if node.name.lower() == "host":
                hosts.extend(a.lower() for a in node.args)
            elif node.name.lower() == "hostregexp":
                patterns.extend(node.args)
        elif isinstance(node, (And, Or)):
            for child in node.operands:
                walk(child)

    walk(parse_rule(rule))
    return hosts, patterns


def entrypoint_tls(config: Any, ep_name: str) -> tuple[Any, list[tuple[str, Any]]] | None:
    """(the entrypoint's http.tls or None, [(router name, its TLS settings)]) for an
    entrypoint that terminates TLS, else None."""
    from hopwire.config.schema import INTERNAL_ENTRYPOINT

    ep = config.entryPoints[ep_name]
    user_eps = [n for n in config.entryPoints if n != INTERNAL_ENTRYPOINT]
    routers = []
    for name, router in config.http.routers.items():
        if ep_name in (router.entryPoints or user_eps):
            tls = router.tls if router.tls is not None else ep.http.tls
            if tls is not None:
                routers.append((name, tls))
    if ep.http.tls is None and not routers:
        return None
    return ep.http.tls, routers


def chooser_for(config: Any, store: Store, ep_name: str) -> Chooser:
    """The options-by-SNI map of a TLS entrypoint, from its TLS routers' Host rules.  A host
    two routers give different options gets the default ones, as in Traefik (logged)."""
    found = entrypoint_tls(config, ep_name)
    assert found is not None
    ep_tls, routers = found
    default = (ep_tls.options if ep_tls is not None else "") or DEFAULT_OPTIONS
    hosts: dict[str, str] = {}
    patterns: list[tuple[re.Pattern[str], str]] = []
    conflicts: set[str] = set()
    for router_name, tls in routers:
        options = tls.options or default
        names, regexps = rule_hosts(config.http.routers[router_name].rule)
        for host in names:
            if hosts.get(host, options) != options:
                conflicts.add(host)
            hosts[host] = options
        patterns += [(re.compile(p), options) for p in regexps]
    for host in sorted(conflicts):
        log.error(
            "entrypoint %s: routers give host %s different TLS options; it gets %r",
            ep_name,
            host,
            default,
        )
        hosts[host] = default
    return Chooser(store, hosts, patterns, default)


def needs_tls(config: Any) -> bool:
    return any(entrypoint_tls(config, name) is not None for name in config.entryPoints)


def _certificates(config: Any, errors: list[str]) -> tuple[list[Certificate], Any]:
    """The configured certificates, and the default one (None: to be made)."""
    tls = config.tls
    certs: list[Certificate] = []
    for i, entry in enumerate(tls.certificates):
        try:
            certs.append(read_certificate(entry.certFile, entry.keyFile, f"tls.certificates[{i}]"))
        except TLSError as exc:
            errors += exc.errors
    store_cfg = tls.stores.get("default")
    default_cfg = store_cfg.defaultCertificate if store_cfg is not None else None
    default = None
    if default_cfg is not None:
        try:
            default = read_certificate(
                default_cfg.certFile, default_cfg.keyFile, "tls.stores.default.defaultCertificate"
            )
        except TLSError as exc:
            errors += exc.errors
    return certs, default


def all_options(config: Any) -> dict[str, Any]:
    options = dict(config.tls.options)
    options.setdefault(DEFAULT_OPTIONS, _default_options())
    return options


def check(config: Any) -> list[str]:
    """Every problem of the TLS configuration (``hopwire.checks``): the backends' client
    certificates and versions, then, with a TLS entrypoint, the files, keys and options."""
    errors: list[str] = []
    transports = [("serversTransport", config.serversTransport)]
    transports += [
        (f"http.serversTransports.{n}", t) for n, t in config.http.serversTransports.items()
    ]
    for key, tr in transports:
        for i, files in enumerate(tr.certificates):
            try:
                read_certificate(files.certFile, files.keyFile, f"{key}.certificates[{i}]")
            except TLSError as exc:
                errors += exc.errors
        if tr.maxVersion and VERSIONS[tr.maxVersion] < VERSIONS[tr.minVersion]:
            errors.append(f"{key}.maxVersion: {tr.maxVersion} is below minVersion")
    if errors or not needs_tls(config):
        return errors
    _certificates(config, errors)
    for name, opt in all_options(config).items():
        errors += check_options(name, opt)
    return errors


def build(config: Any, runtime_dir: str | None = None) -> Store | None:
    """Read every certificate and make every context of this config; None without TLS
    entrypoints.  Raise TLSError with every problem (start: exit 2; reload: old kept)."""
    if not needs_tls(config):
        return None
    errors: list[str] = []
    certs, default_cert = _certificates(config, errors)
    options = all_options(config)
    for name, opt in options.items():
        errors += check_options(name, opt)
    if errors:
        raise TLSError(errors)
    with tempfile.TemporaryDirectory(prefix="hopwire-tls-", dir=runtime_dir) as tmp:
        default = default_cert if default_cert is not None else self_signed(tmp)
        contexts: dict[tuple[str, int], Any] = {}
        for name, opt in options.items():
            key = f"tls.options.{name}"
            for index, cert in [*enumerate(certs), (-1, default)]:
                contexts[(name, index)] = make_context(opt, cert, key, errors)
    if errors:
        raise TLSError(sorted(set(errors)))
    for name, opt in options.items():
        _explain(name, opt)
    return Store(certs, default, options, contexts)


def _default_options() -> Any:
    from hopwire.config.schema import TLSOptions

    return TLSOptions()


def _explain(name: str, options: Any) -> None:
    """Say at start what hopwire does differently from Traefik for these options."""
    key = f"tls.options.{name}"
    others = [p for p in options.alpnProtocols if p != ALPN]
    if others:
        log.info(
            "%s.alpnProtocols: hopwire speaks HTTP/1.1 only: offers %s, not %s",
            key,
            ALPN if ALPN in options.alpnProtocols else "nothing",
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


# -- the ClientHello ----------------------------------------------------------------------

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


def tls_fields(ssl_object: Any) -> tuple[str, str, str | None]:
    """(TLSVersion, TLSCipher, TLSClientSubject) with Traefik's formats: "1.3", the IANA name
    of the suite, the client certificate's subject as RFC 4514 text (None without one)."""
    version = TLS_VERSIONS.get(ssl_object.version() or "", "unknown")
    cipher = ssl_object.cipher()
    name = _iana_names().get(cipher[0], "unknown") if cipher else "unknown"
    subject = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        from cryptography import x509

        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return version, name, subject


_SUITES: list[Any] = []
_IANA: dict[str, str] = {}


def _openssl_suites() -> list[Any]:
    """Every cipher suite this OpenSSL knows (``SSLContext.get_ciphers``), read once."""
    if not _SUITES:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        probe.set_ciphers("ALL:@SECLEVEL=0")
        _SUITES.extend(probe.get_ciphers())
    return _SUITES


def _iana_names() -> dict[str, str]:
    """OpenSSL's cipher suite names -> Traefik's (IANA) ones."""
    if not _IANA:
        for c in _openssl_suites():
            iana = SUITE_NAMES.get(c["id"] & 0xFFFF)
            if iana is not None:
                _IANA[c["name"]] = iana
    return _IANA
