"""The TLS building blocks: the ClientHello reader, certificate choice, options by SNI,
Traefik's names, and the checks that stop start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from hopwire.checks import load
from hopwire.config import ConfigError
from hopwire.http import tls
from tests.certs import Authority


def client_hello(sni: str | None, **kw: object) -> bytes:
    """The first flight of a real OpenSSL client (Python's ssl over memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if "alpn" in kw:
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("sni", ["a.test", "Mixed.Case.Test", "x" * 60 + ".example"])
def test_the_server_name_of_a_real_client_hello(sni: str) -> None:
    data = client_hello(sni, alpn=True)
    assert tls.record_length(data) == len(data)
    assert tls.client_hello_sni(data) == sni.lower()


def test_no_sni_and_not_a_client_hello() -> None:
    assert tls.client_hello_sni(client_hello(None)) is None
    for bad in (b"\x16\x03\x01\x00\x05hello", b"\x15\x03\x03\x00\x02\x02\x28", b"\x16\x03"):
        with pytest.raises(ValueError):
            tls.client_hello_sni(bad)
    assert tls.record_length(b"\x16\x03") == 0  # the header itself is incomplete
    truncated = client_hello("a.test")[:60]
    with pytest.raises(ValueError):
        tls.client_hello_sni(truncated)


def config(tmp: Path, certs: list[dict[str, str]], **tls_cfg: object) -> object:
    raw = {"tls": {"certificates": certs, **tls_cfg}}
    flags = ["--entryPoints.web.address=127.0.0.1:1", "--entryPoints.web.http.tls.options="]
    import yaml

    path = tmp / "c.yml"
    path.write_text(yaml.safe_dump(raw))
    return load(str(path), flags, {})


def test_certificate_index_exact_wildcard_and_default(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    a, wild, cn_only = ca.leaf("a.test"), ca.leaf("*.w.test"), ca.leaf(file="cn", cn="cn.test")
    cfg = config(tmp_path, [a.files(), wild.files(), cn_only.files()])
    store = tls.build(cfg)
    assert store is not None
    assert store.certificate_index("a.test") == 0
    assert store.certificate_index("x.w.test") == 1
    assert store.certificate_index("w.test") is None  # a wildcard needs a label
    assert store.certificate_index("a.x.w.test") is None  # ... exactly one
    assert store.certificate_index("cn.test") == 2  # no SAN: the CN
    assert store.certificate_index(None) is None
    assert store.default.cn == "HOPWIRE DEFAULT CERT"
    assert cfg.entryPoints["web"].http.tls is not None  # type: ignore[attr-defined]


def test_options_by_sni_follow_the_host_rules_and_conflicts_get_the_default(
    tmp_path: Path,
) -> None:
    import yaml

    ca = Authority(tmp_path)
    raw = {
        "entryPoints": {"web": {"address": "127.0.0.1:1"}},
        "tls": {
            "certificates": [ca.leaf("a.test").files()],
            "options": {"modern": {"minVersion": "VersionTLS13"}, "old": {}},
        },
        "http": {
            "routers": {
                "a": {
                    "rule": "Host(`a.test`) && PathPrefix(`/x`)",
                    "service": "s",
                    "tls": {"options": "modern"},
                },
                "re": {
                    "rule": "HostRegexp(`^.+\\.re\\.test$`)",
                    "service": "s",
                    "tls": {"options": "old"},
                },
                "c1": {"rule": "Host(`c.test`)", "service": "s", "tls": {"options": "modern"}},
                "c2": {
                    "rule": "Host(`c.test`) || Host(`d.test`)",
                    "service": "s",
                    "tls": {"options": "old"},
                },
                "plain": {"rule": "Host(`p.test`)", "service": "s"},
            },
            "services": {"s": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:2"}]}}},
        },
    }
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load(str(path), [], {})
    store = tls.build(cfg)
    assert store is not None
    chooser = tls.chooser_for(cfg, store, "web")
    assert chooser.options_for("a.test") == "modern"
    assert chooser.options_for("x.re.test") == "old"
    assert chooser.options_for("c.test") == "default"  # two routers disagree
    assert chooser.options_for("d.test") == "old"
    assert chooser.options_for("p.test") == "default"  # not a TLS router
    assert chooser.options_for(None) == "default"
    assert chooser.context("a.test") is store.contexts[("modern", 0)]
    assert chooser.context("a.test") is chooser.context("a.test")  # cached


def test_traefik_cipher_names_map_to_openssl() -> None:
    errors: list[str] = []
    text = tls.openssl_ciphers(
        ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", "TLS_NOPE"],
        "k",
        errors,
    )
    assert text == "ECDHE-ECDSA-AES128-GCM-SHA256"  # TLS 1.3 suites are not configurable
    assert errors == ["k[2]: unknown cipher suite 'TLS_NOPE'"]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"curvePreferences": ["CurveP256", "CurveP384"]}, "single curve"),
        ({"curvePreferences": ["Curve25519"]}, "unknown curve"),
        ({"minVersion": "VersionTLS13", "maxVersion": "VersionTLS12"}, "below minVersion"),
        ({"minVersion": "TLS1.2"}, "minVersion"),
        ({"clientAuth": {"clientAuthType": "RequireAnyClientCert"}}, "caFiles: required"),
        ({"clientAuth": {"clientAuthType": "VerifyClientCertIfGiven"}}, "caFiles: required"),
        ({"clientAuth": {"clientAuthType": "Sometimes"}}, "clientAuthType"),
        ({"clientAuth": {"caFiles": ["/nonexistent.pem"]}}, "not a readable file"),
        ({"cipherSuites": ["TLS_NOPE"]}, "unknown cipher suite"),
    ],
)
def test_bad_options_stop_start_up_naming_the_key(
    tmp_path: Path, options: dict[str, object], needle: str
) -> None:
    ca = Authority(tmp_path)
    with pytest.raises(ConfigError) as err:
        config(tmp_path, [ca.leaf("a.test").files()], options={"default": options})
    text = "\n".join(err.value.errors)
    assert "tls.options.default" in text and needle in text, text


def test_acme_keys_and_unknown_references_are_refused(tmp_path: Path) -> None:
    import yaml

    raw = {
        "entryPoints": {
            "web": {
                "address": "127.0.0.1:1",
                "http": {"redirections": {"entryPoint": {"to": "nowhere"}}},
            }
        },
        "tls": {"stores": {"other": {}}},
        "http": {
            "routers": {
                "q": {"rule": "Host(`b`)", "service": "s", "tls": {"options": "modrn"}},
            },
            "services": {"s": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:2"}]}}},
        },
    }
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load(str(path), [], {})
    text = "\n".join(err.value.errors)
    assert "http.routers.q.tls.options: 'modrn' is not in tls.options" in text
    assert "redirections.entryPoint.to: 'nowhere'" in text
    assert "tls.stores.other: only the store `default` exists" in text

    raw["http"]["routers"] = {  # type: ignore[index]
        "r": {"rule": "Host(`a`)", "service": "s", "tls": {"certResolver": "le"}}
    }
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load(str(path), [], {})
    text = "\n".join(err.value.errors)
    assert "http.routers.r.tls.certResolver" in text and "ACME" in text
