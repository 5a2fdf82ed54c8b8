from __future__ import annotations

from pathlib import Path

import pytest

from hopwire.checks import load
from hopwire.config import ConfigError, parse_address, parse_duration
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


def errors_of(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    return "\n".join(info.value.errors)


SERVICE = "http:\n  services:\n    s: {loadBalancer: {servers: [{url: 'http://127.0.0.1:9'}]}}\n"
ROUTER = (
    "http:\n  routers:\n    r: {rule: 'PathPrefix(`/`)', service: s@file, middlewares: [m@file]}\n"
)
MIDDLEWARE = "http:\n  middlewares:\n    m: {stripPrefix: {prefixes: [/a]}}\n"


def test_file_provider_directory_merges_and_drops_the_file_suffix(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    (conf / "sub").mkdir(parents=True)
    (conf / "..hidden").mkdir()
    write(conf, SERVICE, "services.yml")
    write(conf / "sub", ROUTER, "routers.yaml")
    write(conf / "sub", MIDDLEWARE, "m.yml")
    write(conf, "not: [yaml", "notes.txt")  # other extensions are not read
    write(conf / "..hidden", "not: [yaml", "x.yml")  # nor dot-directories
    main = write(tmp_path, f"providers:\n  file:\n    directory: {conf}\n")
    config = load(main, environ={})
    assert config.http.routers["r"].service == "s"
    assert config.http.routers["r"].middlewares == ("m",)
    assert set(config.http.services) == {"s"}
    assert config.providers.file is not None and config.providers.file.watch is True


def test_file_provider_refusals(tmp_path: Path) -> None:
    dyn = write(tmp_path, SERVICE + "entryPoints: {}\ntcp: {}\nfoo: 1\n", "dyn.yml")
    main = write(tmp_path, SERVICE + f"providers: {{file: {{filename: {dyn}}}}}\n")
    text = errors_of(main)
    assert f"http.services.s: defined twice, in the main config file and in {dyn}" in text
    assert f"{dyn}: entryPoints is static configuration" in text
    assert f"{dyn}: tcp: TCP routers and services are not supported" in text
    assert f"{dyn}: foo: unknown key" in text
    both = write(tmp_path, f"providers: {{file: {{filename: {dyn}, directory: {tmp_path}}}}}\n")
    assert "providers.file: set filename or directory, not both" in errors_of(both)
    neither = write(tmp_path, "providers: {file: {watch: true}}\n")
    assert "providers.file: filename or directory is required" in errors_of(neither)
    missing = write(tmp_path, "providers: {file: {directory: /nonexistent/x}}\n")
    assert "'/nonexistent/x' is not a readable directory" in errors_of(missing)
    gone = write(tmp_path, "providers: {file: {filename: /nonexistent/x.yml}}\n")
    assert "config file /nonexistent/x.yml: cannot read" in errors_of(gone)
    docker = write(tmp_path, "providers: {docker: {}}\n")
    assert "providers.docker: not supported" in errors_of(docker)


def test_every_kind_of_reference_takes_the_file_suffix(tmp_path: Path) -> None:
    """Traefik 3.7 accepts ``@file`` wherever a name is referenced: a servers transport, a
    router's TLS options and an entrypoint's TLS options among them (issue 21)."""
    dynamic = write(
        tmp_path,
        "http:\n"
        "  routers:\n"
        "    r: {rule: 'PathPrefix(`/`)', service: s@file, tls: {options: modern@file}}\n"
        "  services:\n"
        "    s: {loadBalancer: {serversTransport: customTransport@file,"
        " servers: [{url: 'http://127.0.0.1:9'}]}}\n"
        "  serversTransports:\n"
        "    customTransport: {maxIdleConnsPerHost: 7}\n"
        "tls:\n"
        "  options:\n"
        "    modern: {minVersion: VersionTLS13}\n",
        "dynamic.yml",
    )
    main = write(
        tmp_path,
        "entryPoints:\n"
        "  websecure:\n"
        "    address: ':8443'\n"
        "    http: {tls: {options: modern@file}}\n"
        f"providers:\n  file:\n    filename: {dynamic}\n",
    )
    config = load(main, environ={})
    assert config.http.services["s"].loadBalancer.serversTransport == "customTransport"
    router_tls = config.http.routers["r"].tls
    assert router_tls is not None and router_tls.options == "modern"
    ep_tls = config.entryPoints["websecure"].http.tls
    assert ep_tls is not None and ep_tls.options == "modern"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--metrics.otlp.temporality=monthly"], 'metrics.otlp.temporality: "monthly"'),
        (
            ["--metrics.otlp.http.endpoint=http://c:4318/v1/metrics", "--metrics.otlp.grpc=true"],
            "metrics.otlp: set grpc or http, not both",
        ),
        (["--accesslog.otlp.http.endpoint=c:4318"], "accessLog.otlp.http.endpoint"),
        (["--log.otlp.grpc.endpoint=http://c:4317/x"], "log.otlp.grpc.endpoint"),
        (["--metrics.otlp.pushInterval=0s"], "metrics.otlp.pushInterval"),
        (["--metrics.otlp.explicitBoundaries=1,0.5"], "metrics.otlp.explicitBoundaries"),
        (["--accesslog.otlp.sampleRate=2"], "accessLog.otlp.sampleRate"),
        (["--log.otlp.grpc.insecure=true", "--log.otlp.grpc.tls.ca=/x"], "log.otlp.grpc"),
        (["--metrics.otlp.http.tls.ca=/nonexistent.pem"], "metrics.otlp.http.tls.ca"),
        (["--experimental.plugins=x"], "experimental.plugins: unknown key"),
    ],
)
def test_bad_otlp_settings_name_the_key(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, flags, {})
    assert any(message in line for line in info.value.errors), info.value.errors


def test_otlp_signals_defaults_and_fallbacks() -> None:
    """Metrics and logs go over OTLP/HTTP to their own paths unless grpc is given (as
    Traefik's); each signal's resource falls back to tracing's; flags reach map keys."""
    config = load(
        None,
        [
            "--tracing.serviceName=edge",
            "--tracing.resourceAttributes.deployment.environment=dev",
            "--metrics.otlp=true",
            "--accesslog.otlp.serviceName=edge-logs",
            "--accesslog.otlp.resourceAttributes.team=a",
            "--log.otlp.grpc.endpoint=c:4317",
            "--experimental.otlpLogs=true",
        ],
        {},
    )
    metrics_otlp = config.metrics.otlp
    assert metrics_otlp is not None and metrics_otlp.http is not None
    assert metrics_otlp.http.endpoint == "http://localhost:4318/v1/metrics"
    assert metrics_otlp.pushInterval == 10.0 and metrics_otlp.temporality == "cumulative"
    assert config.tracing is not None
    assert dict(config.tracing.resourceAttributes) == {"deployment.environment": "dev"}
    assert config.resource_of(metrics_otlp) == ("edge", {"deployment.environment": "dev"})
    assert config.accessLog is not None
    assert config.resource_of(config.accessLog.otlp) == (
        "edge-logs",
        {"deployment.environment": "dev", "team": "a"},
    )
    assert config.log.otlp is not None and config.log.otlp.http is None
    assert config.exports_anything()
    without_tracing = load(None, ["--log.otlp=true"], {})
    assert without_tracing.resource_of(without_tracing.log.otlp) == ("hopwire", {})
    assert without_tracing.exports_anything() and not without_tracing.traces_anything()
    assert without_tracing.log.otlp is not None and without_tracing.log.otlp.http is not None
    assert without_tracing.log.otlp.http.endpoint == "http://localhost:4318/v1/logs"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--entryPoints.web.address=:80", "--entryPoints.web.observability.traceVerbosity=all"],
            'entryPoints.web.observability.traceVerbosity: "all"',
        ),
        (
            ["--entryPoints.web.address=:80", "--entryPoints.web.observability.sampleRate=1.5"],
            "entryPoints.web.observability.sampleRate",
        ),
        (["--tracing.keep.slowerThan=-1s"], "tracing.keep.slowerThan"),
        (["--tracing.keep.errors=maybe"], "tracing.keep.errors"),
        (["--tracing.propagators=tracecontext,xray"], 'tracing.propagators[1]: "xray"'),
        (["--tracing.propagators=none,b3"], "tracing.propagators: none stands alone"),
        (["--tracing.propagators=b3,b3multi"], "tracing.propagators: b3 or b3multi, not both"),
        (
            ["--entryPoints.web.address=:80", "--entryPoints.web.traceContext.untrusted=drop"],
            'entryPoints.web.traceContext.untrusted: "drop"',
        ),
        (
            [
                "--entryPoints.web.address=:80",
                "--entryPoints.web.traceContext.trustedIPs=10.0.0.0/33",
            ],
            "entryPoints.web.traceContext.trustedIPs",
        ),
    ],
)
def test_bad_trace_volume_settings_name_the_key(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, ["--tracing=true", *flags], {})
    assert any(message in line for line in info.value.errors), info.value.errors


def test_otel_propagators_fills_in_what_the_file_does_not_say() -> None:
    config = load(None, ["--tracing=true"], {"OTEL_PROPAGATORS": " b3multi , tracecontext "})
    assert config.tracing is not None and config.tracing.propagators == ("b3multi", "tracecontext")
    config = load(
        None, ["--tracing=true", "--tracing.propagators=b3"], {"OTEL_PROPAGATORS": "none"}
    )
    assert config.tracing is not None and config.tracing.propagators == ("b3",)
    with pytest.raises(ConfigError) as info:
        load(None, ["--tracing=true"], {"OTEL_PROPAGATORS": "jaeger"})
    assert any("tracing.propagators[0]" in line for line in info.value.errors)


def test_trace_volume_settings_and_their_inheritance() -> None:
    """A Traefik file's traceVerbosity loads; unset inherits router <- entrypoint <- default."""
    from hopwire.config.schema import inherited

    config = load(
        None,
        [
            "--entryPoints.web.address=:80",
            "--entryPoints.web.observability.traceVerbosity=detailed",
            "--entryPoints.web.observability.sampleRate=0.25",
            "--tracing.keep.errors=true",
            "--tracing.keep.slowerThan=1.5s",
        ],
        {},
    )
    ep = config.entryPoints["web"].observability
    assert inherited("traceVerbosity", None, ep, "minimal") == "detailed"
    assert inherited("sampleRate", None, ep, 1.0) == 0.25
    assert inherited("sampleRate", None, None, 1.0) == 1.0
    assert config.tracing is not None
    assert config.tracing.keep.errors and config.tracing.keep.slowerThan == 1.5
