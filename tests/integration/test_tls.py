"""TLS termination end to end: certificates made in the test (a CA, two leaves, a wildcard, an
expired one), a real hopwire master with workers, real TLS clients (Python's ssl, OpenSSL)."""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import socket
import ssl
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import h11
import pytest
from cryptography import x509

from tests.certs import Authority, Leaf
from tests.harness import exchange, free_port, header, request, service, wait_for
from tests.otlp_receiver import GrpcReceiver, attrs


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def client_context(
    ca: Authority | None,
    cert: Leaf | None = None,
    version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca.pem.decode())
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if version is not None:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: here to be refused
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
    return ctx


def connect(port: int, sni: str | None, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def serial_of(sock: ssl.SSLSocket) -> int:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def https(
    port: int,
    sni: str | None,
    ctx: ssl.SSLContext,
    method: str = "GET",
    target: str = "/",
    host: str | None = None,
    body: bytes = b"",
) -> tuple[int, list[tuple[str, str]], bytes, int]:
    """One request on a new TLS connection: (status, headers, body, certificate serial)."""
    with connect(port, sni, ctx) as sock:
        status, headers, data = exchange(sock, method, target, body=body, host=host or sni or "x")
        return status, headers, data, serial_of(sock)


def tls_config(backend: Any, certs: list[Leaf], **extra: Any) -> dict[str, Any]:
    """`web` plain, `websecure` TLS for every router, one router to ``backend``."""
    port = free_port()
    config: dict[str, Any] = {
        "entryPoints": {"websecure": {"address": f"127.0.0.1:{port}", "http": {"tls": {}}}},
        "tls": {"certificates": [c.files() for c in certs]},
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service(backend.url)},
        },
    }
    for key, value in extra.items():
        config[key] = value
    return config


def again(config: dict[str, Any]) -> dict[str, Any]:
    """The same config for another instance: new ports (the harness fills in web/internal)."""
    config = copy.deepcopy(config)
    eps = config["entryPoints"]
    eps.pop("web", None)
    eps.pop("internal", None)
    eps["websecure"]["address"] = f"127.0.0.1:{free_port()}"
    return config


def tls_port(hw: Any) -> int:
    return int(hw.config["entryPoints"]["websecure"]["address"].rsplit(":", 1)[1])


def metric(hw: Any, name: str, **labels: str) -> float:
    text = request(hw.internal, "GET", "/metrics")[2].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_certificate_chosen_by_sni_wildcard_and_default(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    a, other, wild = ca.leaf("a.test"), ca.leaf("b.test", "c.test"), ca.leaf("*.w.test")
    hw = make_hopwire(tls_config(b, [a, other, wild]))
    port = tls_port(hw)
    ctx = client_context(ca)
    assert https(port, "a.test", ctx)[3] == a.serial
    assert https(port, "c.test", ctx)[3] == other.serial  # the second SAN
    assert https(port, "x.w.test", ctx)[3] == wild.serial
    loose = client_context(None)
    # a wildcard covers one label only; no match and no SNI: the generated default
    for sni in ("a.b.w.test", "unknown.test", None):
        with connect(port, sni, loose) as sock:
            cert = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True) or b"")
            assert cert.serial_number not in (a.serial, other.serial, wild.serial)
            assert "HOPWIRE DEFAULT CERT" in cert.subject.rfc4514_string()
    status, headers, body, _ = https(port, "a.test", ctx, target="/echo")
    seen = json.loads(body)["headers"]
    assert status == 200
    assert ["x-forwarded-proto", "https"] in seen
    assert ["x-forwarded-port", "443"] in seen  # no port in Host: the scheme's (Traefik)
    status, _, body, _ = https(port, "a.test", ctx, target="/echo", host=f"a.test:{port}")
    assert ["x-forwarded-port", str(port)] in json.loads(body)["headers"]
    # the plain entrypoint beside it is unchanged
    seen = json.loads(request(hw.port, "GET", "/echo")[2])["headers"]
    assert ["x-forwarded-proto", "http"] in seen and ["x-forwarded-port", "80"] in seen


def test_configured_default_certificate_and_sni_strict(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    a, fallback = ca.leaf("a.test"), ca.leaf("fallback.test")
    config = tls_config(b, [a])
    config["tls"]["stores"] = {"default": {"defaultCertificate": fallback.files()}}
    hw = make_hopwire(config)
    port = tls_port(hw)
    with connect(port, "nothing.test", client_context(None)) as sock:
        assert serial_of(sock) == fallback.serial
    config = again(config)
    config["tls"]["options"] = {"default": {"sniStrict": True}}
    strict = make_hopwire(config)
    port = tls_port(strict)
    assert https(port, "a.test", client_context(ca))[0] == 200
    for sni in ("nothing.test", None):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            connect(port, sni, client_context(None)).close()
    wait_for(lambda: metric(strict, "hopwire_tls_handshake_errors_total", reason="sni_strict") == 2)


def test_min_version_refuses_tls_1_1_and_max_version(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    a = ca.leaf("a.test")
    hw = make_hopwire(tls_config(b, [a]))
    port = tls_port(hw)
    with pytest.raises(ssl.SSLError):
        connect(port, "a.test", client_context(ca, version=ssl.TLSVersion.TLSv1_1)).close()
    with connect(port, "a.test", client_context(ca, version=ssl.TLSVersion.TLSv1_2)) as sock:
        assert sock.version() == "TLSv1.2"
    with connect(port, "a.test", client_context(ca)) as sock:
        assert sock.version() == "TLSv1.3"
    wait_for(
        lambda: (
            metric(
                hw,
                "hopwire_tls_handshake_errors_total",
                entrypoint="websecure",
                reason="unsupported_protocol",
            )
            == 1
        )
    )
    config = tls_config(b, [a])  # a new one: the harness filled this one's ports in
    config["tls"]["options"] = {"old": {"maxVersion": "VersionTLS12"}}
    # as in Traefik, options come with the router whose Host() matches the SNI
    config["http"]["routers"]["r"].update(rule="Host(`a.test`)", tls={"options": "old"})
    capped = make_hopwire(config)
    with connect(tls_port(capped), "a.test", client_context(ca)) as sock:
        assert sock.version() == "TLSv1.2"


def test_options_chosen_by_sni_from_the_routers_host_rules(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    """As in Traefik: the handshake of a.test gets the options of the router for a.test."""
    b = make_backend()
    a, other = ca.leaf("a.test"), ca.leaf("b.test")
    config = tls_config(b, [a, other])
    config["tls"]["options"] = {"modern": {"minVersion": "VersionTLS13"}}
    config["http"]["routers"] = {
        "a": {"rule": "Host(`a.test`)", "service": "s", "tls": {"options": "modern"}},
        "b": {"rule": "Host(`b.test`)", "service": "s", "tls": {}},
    }
    hw = make_hopwire(config)
    port = tls_port(hw)
    tls12 = client_context(ca, version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        connect(port, "a.test", tls12).close()
    with connect(port, "b.test", tls12) as sock:
        assert sock.version() == "TLSv1.2"
    assert https(port, "a.test", client_context(ca))[0] == 200


@pytest.mark.parametrize(
    ("kind", "none", "good", "foreign"),
    [
        ("NoClientCert", True, True, True),
        ("RequestClientCert", True, True, False),  # verified when given (stricter than Traefik)
        ("RequireAnyClientCert", False, True, False),  # verified (stricter than Traefik)
        ("VerifyClientCertIfGiven", True, True, False),
        ("RequireAndVerifyClientCert", False, True, False),
    ],
)
def test_client_auth_types(
    make_backend: Any,
    make_hopwire: Any,
    ca: Authority,
    tmp_path: Path,
    kind: str,
    none: bool,
    good: bool,
    foreign: bool,
) -> None:
    b = make_backend()
    a = ca.leaf("a.test")
    client = ca.leaf(file="client", cn="client-1", client=True)
    other_ca = Authority(tmp_path, "other CA")
    stranger = other_ca.leaf(file="stranger", cn="stranger", client=True)
    config = tls_config(b, [a], accessLog={"filePath": str(tmp_path / "access.log")})
    config["tls"]["options"] = {
        "default": {"clientAuth": {"caFiles": [str(ca.path)], "clientAuthType": kind}}
    }
    hw = make_hopwire(config)
    port = tls_port(hw)

    def works(cert: Leaf | None) -> bool:
        try:  # TLS 1.3: a refused client certificate shows at the first read
            return https(port, "a.test", client_context(ca, cert))[0] == 200
        except (ssl.SSLError, ConnectionError, h11.RemoteProtocolError):
            return False

    assert works(None) is none
    assert works(client) is good
    assert works(stranger) is foreign
    lines = wait_for(lambda: (tmp_path / "access.log").read_text().splitlines())
    wait_for(
        lambda: len((tmp_path / "access.log").read_text().splitlines()) == none + good + foreign
    )
    docs = [json.loads(x) for x in (tmp_path / "access.log").read_text().splitlines()]
    subjects = [d.get("TLSClientSubject") for d in docs]
    if kind == "NoClientCert":
        assert subjects == [None] * len(docs)  # never requested
    else:
        assert "CN=client-1,O=hopwire tests" in subjects
    assert lines


def test_require_any_without_ca_files_stops_start_up(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    config = tls_config(make_backend(), [ca.leaf("a.test")])
    config["tls"]["options"] = {
        "default": {"clientAuth": {"clientAuthType": "RequireAnyClientCert"}}
    }
    hw = make_hopwire(config, start=False)
    hw.start(wait=False)
    assert hw.proc.wait(20) == 2
    assert "tls.options.default.clientAuth.caFiles" in hw.logs()


def test_curve_preferences_more_than_one_is_refused(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    config = tls_config(make_backend(), [ca.leaf("a.test")])
    config["tls"]["options"] = {"default": {"curvePreferences": ["CurveP256", "X25519"]}}
    hw = make_hopwire(config, start=False)
    hw.start(wait=False)
    assert hw.proc.wait(20) == 2
    assert "curvePreferences" in hw.logs() and "single curve" in hw.logs()
    config = again(config)
    config["tls"]["options"] = {
        "default": {
            "curvePreferences": ["CurveP384"],
            "cipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
        }
    }
    hw = make_hopwire(config)
    with connect(
        tls_port(hw), "a.test", client_context(ca, version=ssl.TLSVersion.TLSv1_2)
    ) as sock:
        assert sock.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_bad_pem_at_start_names_the_file(
    make_backend: Any, make_hopwire: Any, ca: Authority, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    a = ca.leaf("a.test")
    for cert, key, needle in [
        (str(bad), str(a.key), "bad.crt"),
        (str(tmp_path / "missing.crt"), str(a.key), "missing.crt"),
        (str(a.cert), str(ca.leaf("b.test").key), "is not the PEM key"),
    ]:
        config = tls_config(make_backend(), [])
        config["tls"]["certificates"] = [{"certFile": cert, "keyFile": key}]
        hw = make_hopwire(config, start=False)
        hw.start(wait=False)
        assert hw.proc.wait(20) == 2
        assert "tls.certificates[0]" in hw.logs() and needle in hw.logs()


def test_expired_certificate_loads_and_shows_in_the_expiry_metric(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    old = ca.leaf("old.test", expired=True)
    a = ca.leaf("a.test")
    hw = make_hopwire(tls_config(make_backend(), [old, a]))
    with connect(tls_port(hw), "old.test", client_context(None)) as sock:
        assert serial_of(sock) == old.serial
    expiry = metric(
        hw, "hopwire_tls_certs_not_after", cn="old.test", serial=format(old.serial, "x")
    )
    assert expiry == pytest.approx(old.not_after.timestamp())
    assert expiry < time.time()
    assert metric(hw, "hopwire_tls_certs_not_after", cn="a.test", sans="a.test") > time.time()


def test_reload_swaps_the_certificate_under_load_without_a_failed_request(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    first = ca.leaf("a.test", file="live")
    hw = make_hopwire(tls_config(b, [first]))
    port = tls_port(hw)
    ctx = client_context(ca)
    serials: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                status, _, _, serial = https(port, "a.test", ctx)
                assert status == 200
                serials.append(serial)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(serials) > 20)
        second = ca.leaf("a.test", file="live")  # the same files, renewed (certbot-style)
        hw.signal(signal.SIGHUP)
        wait_for(lambda: second.serial in serials[-5:], timeout=20)
        count = len(serials)
        wait_for(lambda: len(serials) > count + 20)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert serials[-1] == second.serial and first.serial in serials


def test_bad_pem_at_reload_keeps_the_old_certificate(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    live = ca.leaf("a.test", file="live")
    hw = make_hopwire(tls_config(b, [live]))
    port = tls_port(hw)
    live.cert.write_text("garbage\n")
    hw.signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in hw.logs() and "live.crt" in hw.logs())
    assert https(port, "a.test", client_context(ca))[3] == live.serial
    assert metric(hw, "hopwire_config_reloads_failure_total") == 1


def test_handshake_errors_are_counted_by_reason(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    config = tls_config(b, [ca.leaf("a.test")])
    config["entryPoints"]["websecure"]["transport"] = {
        "respondingTimeouts": {"readTimeout": "300ms"}
    }
    hw = make_hopwire(config)
    port = tls_port(hw)
    # a client that does not trust the certificate: its alert ends the handshake
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(port, "a.test", ssl.create_default_context()).close()
    # a record that says handshake but holds no ClientHello
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")
        with contextlib.suppress(ConnectionResetError):  # closed with the bytes unread: RST
            assert sock.recv(100) == b""
    # a scanner that connects, starts a record and stays silent: the readTimeout
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\x16\x03\x01")
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
    # a TCP probe that sends nothing is not a failed handshake
    socket.create_connection(("127.0.0.1", port)).close()
    labels = {"entrypoint": "websecure"}
    wait_for(
        lambda: (
            metric(
                hw, "hopwire_tls_handshake_errors_total", reason="tlsv1_alert_unknown_ca", **labels
            )
            == 1
        )
    )
    wait_for(
        lambda: metric(hw, "hopwire_tls_handshake_errors_total", reason="malformed", **labels) == 1
    )
    wait_for(
        lambda: metric(hw, "hopwire_tls_handshake_errors_total", reason="timeout", **labels) == 1
    )
    time.sleep(1.2)
    assert metric(hw, "hopwire_tls_handshake_errors_total", **labels) == 3
    assert "TLS handshake failed" not in hw.logs()  # DEBUG only
    assert https(port, "a.test", client_context(ca))[0] == 200  # still serving


def test_plain_http_on_a_tls_entrypoint_never_reaches_a_backend(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    hw = make_hopwire(tls_config(b, [ca.leaf("a.test")]))
    status, _, _ = request(tls_port(hw), "GET", "/plain")
    assert status == 404  # as Traefik: its plain side has no router
    assert not [r for r in b.requests if r[1] == "/plain"]


def test_one_entrypoint_carries_tls_and_plain_routers(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    """As in Traefik, a router with tls answers TLS connections only, one without plain only."""
    secure, plain = make_backend("secure"), make_backend("plain")
    a = ca.leaf("a.test")
    hw = make_hopwire(
        {
            "tls": {"certificates": [a.files()]},
            "http": {
                "routers": {
                    "s": {"rule": "Host(`a.test`)", "service": "secure", "tls": {}},
                    "p": {"rule": "Host(`a.test`)", "service": "plain"},
                },
                "services": {"secure": service(secure.url), "plain": service(plain.url)},
            },
        }
    )
    body = https(hw.port, "a.test", client_context(ca), target="/echo")[2]
    assert json.loads(body)["server"] == "secure"
    body = request(hw.port, "GET", "/echo", host="a.test")[2]
    assert json.loads(body)["server"] == "plain"


@pytest.mark.parametrize("permanent", [True, False])
def test_redirection_to_the_tls_entrypoint(
    make_backend: Any, make_hopwire: Any, ca: Authority, tmp_path: Path, permanent: bool
) -> None:
    b = make_backend()
    config = tls_config(b, [ca.leaf("a.test")], accessLog={"filePath": str(tmp_path / "a.log")})
    hw_port = free_port()
    config["entryPoints"]["web"] = {
        "address": f"127.0.0.1:{hw_port}",
        "http": {"redirections": {"entryPoint": {"to": "websecure", "permanent": permanent}}},
    }
    hw = make_hopwire(config)
    port = tls_port(hw)
    codes = {}
    for method in ("GET", "POST", "HEAD"):
        status, headers, _ = request(hw_port, method, "/x/y?q=1", host="a.test:80", body=b"")
        codes[method] = status
        assert header(headers, "location") == f"https://a.test:{port}/x/y?q=1"
    assert codes == (
        {"GET": 301, "POST": 308, "HEAD": 308}
        if permanent
        else {"GET": 302, "POST": 307, "HEAD": 307}
    )
    assert not b.requests  # answered by hopwire itself
    docs = wait_for(lambda: [json.loads(x) for x in (tmp_path / "a.log").read_text().splitlines()])
    assert docs[0]["RouterName"] == "web-to-websecure@internal"
    assert docs[0]["ServiceName"] == "noop@internal" and docs[0].get("OriginStatus") is None


def test_redirections_answer_as_traefik_does(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """The real Traefik 3.7, same entrypoint option: same status codes and Location."""
    from tests.harness import Traefik

    b = make_backend()
    redirect = {"http": {"redirections": {"entryPoint": {"to": ":8443", "scheme": "https"}}}}
    dynamic = {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service(b.url)},
        }
    }
    traefik = Traefik(tmp_path, dynamic, redirect)
    try:
        wait_for(lambda: _answers(traefik.port), timeout=30)
        hw = make_hopwire(
            {**dynamic, "entryPoints": {"web": {"address": f"127.0.0.1:{free_port()}", **redirect}}}
        )
        hw_port = int(hw.config["entryPoints"]["web"]["address"].rsplit(":", 1)[1])
        for method, target, host in [
            ("GET", "/a?b=c", "a.test"),
            ("POST", "/p", "a.test:8080"),
            ("PUT", "/x/../y", "a.test:81"),
            ("HEAD", "/", "B.Test"),
        ]:
            ours = request(hw_port, method, target, host=host)
            theirs = request(traefik.port, method, target, host=host)
            assert ours[0] == theirs[0], (method, target, ours, theirs)
            assert header(ours[1], "location") == header(theirs[1], "location"), (ours, theirs)
    finally:
        traefik.stop()


def _answers(port: int) -> bool:
    try:
        return request(port, "GET", "/")[0] in (301, 308)
    except OSError:
        return False


def test_span_scheme_and_access_log_fields(
    make_backend: Any, make_hopwire: Any, ca: Authority, tmp_path: Path
) -> None:
    rx = GrpcReceiver()
    try:
        b = make_backend()
        config = tls_config(
            b,
            [ca.leaf("a.test")],
            accessLog={"filePath": str(tmp_path / "a.log")},
            tracing={
                "otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}},
                "batch": {"scheduleDelay": "100ms"},
            },
        )
        hw = make_hopwire(config)
        ctx = client_context(ca, version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        assert https(tls_port(hw), "a.test", ctx, target="/s")[0] == 200
        assert request(hw.port, "GET", "/p")[0] == 200
        spans = rx.wait(4)
        servers = {attrs(s)["url.path"]: attrs(s) for s in spans if s.kind == 2}
        assert servers["/s"]["url.scheme"] == "https" and servers["/p"]["url.scheme"] == "http"
        assert servers["/s"]["server.port"] == 443
        docs = wait_for(
            lambda: (
                [json.loads(x) for x in (tmp_path / "a.log").read_text().splitlines()][1:]
                and [json.loads(x) for x in (tmp_path / "a.log").read_text().splitlines()]
            )
        )
        by_path = {d["RequestPath"]: d for d in docs}
        tls_doc, plain_doc = by_path["/s"], by_path["/p"]
        assert tls_doc["RequestScheme"] == "https" and tls_doc["TLSVersion"] == "1.2"
        assert tls_doc["TLSCipher"] == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        assert "TLSClientSubject" not in tls_doc
        assert plain_doc["RequestScheme"] == "http" and "TLSVersion" not in plain_doc
    finally:
        rx.close()


def test_keep_alive_requests_share_one_handshake(
    make_backend: Any, make_hopwire: Any, ca: Authority
) -> None:
    b = make_backend()
    hw = make_hopwire(tls_config(b, [ca.leaf("a.test")]))
    with connect(tls_port(hw), "a.test", client_context(ca)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for i in range(5):
            status, _, _ = exchange(
                sock, "POST", f"/k{i}", body=b"x" * 70000, host="a.test", conn=conn
            )
            assert status == 200
    assert [r[3] for r in b.requests] == [b"x" * 70000] * 5


def test_servers_transport_server_name_client_certificate_and_versions(
    make_backend: Any, make_hopwire: Any, ca: Authority, tmp_path: Path
) -> None:
    """A backend over TLS that requires a client certificate and answers for a name other
    than its address: serverName and certificates make it work; maxVersion is obeyed."""
    backend_cert = ca.leaf("backend.internal", file="backend")
    b = make_backend("mtls", tls=ca.mtls_server(backend_cert))
    client = ca.leaf(file="to-backend", cn="hopwire", client=True)
    url = b.url.replace("http://", "https://")
    transport = {
        "rootCAs": [str(ca.path)],
        "serverName": "backend.internal",
        "certificates": [client.files()],
    }
    routers = {"r": {"rule": "PathPrefix(`/`)", "service": "s"}}
    good = make_hopwire(
        {
            "http": {
                "routers": routers,
                "services": {"s": service(url, serversTransport="t")},
                "serversTransports": {"t": transport},
            }
        }
    )
    assert request(good.port, "GET", "/echo")[0] == 200
    bad = make_hopwire(
        {
            "http": {
                "routers": routers,
                "services": {"s": service(url, serversTransport="t")},
                "serversTransports": {"t": {**transport, "certificates": []}},
            }
        }
    )
    assert request(bad.port, "GET", "/echo")[0] == 502  # the backend wants a certificate
    capped = make_hopwire(
        {
            "http": {
                "routers": routers,
                "services": {"s": service(url, serversTransport="t")},
                "serversTransports": {
                    "t": {**transport, "minVersion": "VersionTLS12", "maxVersion": "VersionTLS12"}
                },
            }
        }
    )
    assert request(capped.port, "GET", "/echo")[0] == 200
    assert b.tls_versions[-1] == "TLSv1.2"
    assert "TLSv1.3" in b.tls_versions  # the uncapped ones


def test_sslyze_finds_nothing_weak(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    """A strict scanner: no protocol below the minimum, no weak cipher, a complete chain."""
    from sslyze import (
        ScanCommand,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )
    from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum

    ca = Authority(tmp_path)
    leaf = ca.leaf("a.test")
    hw = make_hopwire(tls_config(make_backend(), [leaf]))
    location = ServerNetworkLocation("a.test", tls_port(hw), ip_address="127.0.0.1")
    commands = {
        ScanCommand.SSL_2_0_CIPHER_SUITES,
        ScanCommand.SSL_3_0_CIPHER_SUITES,
        ScanCommand.TLS_1_0_CIPHER_SUITES,
        ScanCommand.TLS_1_1_CIPHER_SUITES,
        ScanCommand.TLS_1_2_CIPHER_SUITES,
        ScanCommand.TLS_1_3_CIPHER_SUITES,
        ScanCommand.CERTIFICATE_INFO,
        ScanCommand.HEARTBLEED,
        ScanCommand.TLS_COMPRESSION,
    }
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():  # sslyze's bundled trust stores hold a negative serial
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        scanner = Scanner()
        scanner.queue_scans([ServerScanRequest(location, scan_commands=commands)])
        [result] = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED
    scan = result.scan_result
    assert scan is not None
    for attempt in (
        scan.ssl_2_0_cipher_suites,
        scan.ssl_3_0_cipher_suites,
        scan.tls_1_0_cipher_suites,
        scan.tls_1_1_cipher_suites,
    ):
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED
        assert attempt.result is not None and not attempt.result.accepted_cipher_suites
    accepted = [
        s.cipher_suite
        for attempt in (scan.tls_1_2_cipher_suites, scan.tls_1_3_cipher_suites)
        for s in (attempt.result.accepted_cipher_suites if attempt.result else [])
    ]
    assert accepted
    for suite in accepted:
        name = suite.name
        assert suite.key_size >= 128, name
        for weak in ("RC4", "3DES", "DES_", "NULL", "EXPORT", "anon", "_MD5", "CBC"):
            assert weak not in name, name
        assert name.startswith(("TLS_ECDHE_", "TLS_AES_", "TLS_CHACHA20_")), name  # forward secrecy
    assert (
        scan.heartbleed.result is not None
        and not scan.heartbleed.result.is_vulnerable_to_heartbleed
    )
    assert (
        scan.tls_compression.result is not None
        and not scan.tls_compression.result.supports_compression
    )
    info = scan.certificate_info.result
    assert info is not None, "".join(scan.certificate_info.error_trace.format())  # type: ignore[union-attr]
    [deployment] = info.certificate_deployments
    chain = deployment.received_certificate_chain
    assert [c.serial_number for c in chain] == [leaf.serial, ca.cert.serial_number]  # complete
    assert deployment.received_chain_has_valid_order


def test_tls_entrypoint_answers_as_traefik_does(
    make_backend: Any, make_hopwire: Any, ca: Authority, tmp_path: Path
) -> None:
    """The real Traefik 3.7 with the same TLS entrypoint and certificate: the same
    X-Forwarded-* to the backend, and the same answer to plain HTTP on the TLS port."""
    from tests.harness import Traefik

    b = make_backend()
    leaf = ca.leaf("a.test")
    dynamic = {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service(b.url)},
        },
        "tls": {"certificates": [leaf.files()]},
    }
    traefik = Traefik(tmp_path, copy.deepcopy(dynamic), {"http": {"tls": {}}})
    try:
        ctx = client_context(ca)

        def routed() -> bool:
            try:
                return https(traefik.port, "a.test", ctx)[0] == 200
            except OSError:
                return False

        wait_for(routed, timeout=30)
        config = {
            **dynamic,
            "entryPoints": {
                "websecure": {"address": f"127.0.0.1:{free_port()}", "http": {"tls": {}}}
            },
        }
        hw = make_hopwire(config)
        names = ("x-forwarded-proto", "x-forwarded-port", "x-forwarded-host")
        for host in ("a.test", "a.test:8443", "a.test:443"):
            seen = []
            for port in (tls_port(hw), traefik.port):
                body = https(port, "a.test", ctx, target="/echo", host=host)[2]
                got = {n.lower(): v for n, v in json.loads(body)["headers"]}
                seen.append({n: got.get(n) for n in names})
            assert seen[0] == seen[1], (host, seen)
        assert request(tls_port(hw), "GET", "/")[0] == request(traefik.port, "GET", "/")[0]
    finally:
        traefik.stop()


@pytest.mark.parametrize("where", ["entrypoint", "router"])
def test_file_suffixed_references_as_traefik_takes_them(
    make_backend: Any, make_hopwire: Any, ca: Authority, tmp_path: Path, where: str
) -> None:
    """``modern@file`` for TLS options (an entrypoint's or a router's) and ``custom@file`` for
    a servers transport, as Traefik 3.7's documentation writes them: both proxies start, take
    TLS 1.3 and refuse TLS 1.2 (the options were applied), and route through the transport."""
    from tests.harness import Traefik

    b = make_backend()
    leaf = ca.leaf("a.test")
    # Traefik applies TLS options by the Host of a router's rule (the handshake's SNI)
    router: dict[str, Any] = {"rule": "Host(`a.test`)", "service": "s"}
    entrypoint: dict[str, Any] = {"http": {"tls": {}}}
    if where == "router":
        router["tls"] = {"options": "modern@file"}
    else:
        entrypoint = {"http": {"tls": {"options": "modern@file"}}}
    dynamic = {
        "http": {
            "routers": {"r": router},
            "services": {"s": service(b.url, serversTransport="custom@file")},
            "serversTransports": {"custom": {"maxIdleConnsPerHost": 3}},
        },
        "tls": {
            "certificates": [leaf.files()],
            "options": {"modern": {"minVersion": "VersionTLS13"}},
        },
    }
    traefik = Traefik(tmp_path, copy.deepcopy(dynamic), entrypoint)
    try:
        modern = client_context(ca)

        def routed() -> bool:
            try:
                return https(traefik.port, "a.test", modern)[0] == 200
            except OSError:
                return False

        wait_for(routed, timeout=30)
        hw = make_hopwire(
            {
                **dynamic,
                "entryPoints": {"websecure": {"address": f"127.0.0.1:{free_port()}", **entrypoint}},
            }
        )
        old = client_context(ca, version=ssl.TLSVersion.TLSv1_2)
        for name, port in (("hopwire", tls_port(hw)), ("traefik", traefik.port)):
            assert https(port, "a.test", modern)[0] == 200, name
            try:
                https(port, "a.test", old)
            except (ssl.SSLError, OSError):
                continue
            raise AssertionError(f"{name} took TLS 1.2 with minVersion VersionTLS13")
    finally:
        traefik.stop()
