from __future__ import annotations

from pathlib import Path

import pytest

from hopwire.config import ConfigError, load, parse_address, parse_duration
from hopwire.config.reference import markdown


def write(tmp_path: Path, text: str, name: str = "c.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("250ms", 0.25),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        (5, 5.0),
        ("2.5", 2.5),
        (0, 0.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10x", "-1s", "1s2", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_addresses() -> None:
    assert parse_address(":8080") == ("", 8080)
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    for bad in ("8080", "host:", ":0", ":70000", "[::1]8080", "a:b:c"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 3\nentryPoints: {web: {address: ':8080'}}\n")
    assert load(path, [], {}).workers == 3
    assert load(path, [], {"HOPWIRE_WORKERS": "4"}).workers == 4
    assert load(path, ["--workers=5"], {"HOPWIRE_WORKERS": "4"}).workers == 5
    env = {
        "HOPWIRE_ENTRYPOINTS_WEB_ADDRESS": ":9090",
        "HOPWIRE_ENTRYPOINTS_WEB_TRANSPORT_RESPONDINGTIMEOUTS_READTIMEOUT": "5s",
    }
    config = load(path, [], env)
    assert config.entryPoints["web"].address == ":9090"
    assert config.entryPoints["web"].transport.respondingTimeouts.readTimeout == 5.0
    config = load(path, ["--entryPoints.web.address=:7070"], env)
    assert config.entryPoints["web"].address == ":7070"


def test_flags_build_services_and_lists(tmp_path: Path) -> None:
    config = load(
        None,
        [
            "--http.routers.r.rule=Host(`a`)",
            "--http.routers.r.service=s",
            "--http.services.s.loadBalancer.servers[0].url=http://127.0.0.1:1",
            "--http.services.s.loadBalancer.servers[1].url=http://127.0.0.1:2",
            "--http.services.s.loadBalancer.servers[1].weight=3",
            "--entryPoints.web.address=:8080",
            "--entryPoints.web.forwardedHeaders.trustedIPs=10.0.0.0/8,127.0.0.1",
        ],
        {},
    )
    servers = config.http.services["s"].loadBalancer.servers
    assert [s.weight for s in servers] == [1, 3]
    assert config.entryPoints["web"].forwardedHeaders.trustedIPs == ("10.0.0.0/8", "127.0.0.1")


def test_defaults_and_internal_entrypoint() -> None:
    config = load(None, [], {})
    assert config.entryPoints["web"].address == ":8080"
    assert config.entryPoints["internal"].address == "127.0.0.1:8082"
    ep = config.entryPoints["web"]
    assert ep.transport.respondingTimeouts.readTimeout == 60.0
    assert ep.transport.respondingTimeouts.idleTimeout == 180.0
    assert ep.transport.lifeCycle.graceTimeOut == 10.0
    assert config.serversTransport.maxIdleConnsPerHost == 200
    assert config.serversTransport.forwardingTimeouts.dialTimeout == 30.0


def test_toml_and_yaml_read_the_same(tmp_path: Path) -> None:
    yml = write(tmp_path, "entryPoints:\n  web:\n    address: ':81'\n")
    toml = write(tmp_path, '[entryPoints.web]\naddress = ":81"\n', "c.toml")
    assert load(yml, [], {}) == load(toml, [], {})


def test_every_error_is_reported_with_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "workerz: 2\nentryPoints: {web: {address: bad}}\n")
    with pytest.raises(ConfigError) as info:
        load(path, ["--nope.x=1"], {"HOPWIRE_PINGG_ENTRYPOINT": "x"})
    text = "\n".join(info.value.errors)
    assert "workerz: unknown key (did you mean 'workers'?)" in text
    assert "entryPoints.web.address" in text
    assert "flag --nope.x" in text
    assert "environment HOPWIRE_PINGG_ENTRYPOINT" in text


def test_config_is_frozen() -> None:
    config = load(None, [], {})
    with pytest.raises(AttributeError):
        config.workers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.entryPoints["x"] = config.entryPoints["web"]  # type: ignore[index]


def test_reference_lists_every_key() -> None:
    text = markdown()
    for key in (
        "entryPoints.<name>.transport.respondingTimeouts.readTimeout",
        "http.services.<name>.loadBalancer.healthCheck.interval",
        "serversTransport.forwardingTimeouts.dialTimeout",
        "ping.entryPoint",
    ):
        assert f"`{key}`" in text
