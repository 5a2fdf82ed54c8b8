"""The middlewares' building blocks: Go's replacement templates and path cleaning, htpasswd
secrets (checked against the openssl CLI), Basic credentials, Go durations, the shared token
buckets and in-flight counts, chains."""

from __future__ import annotations

import base64
import os
import re
import subprocess

import pytest

from hopwire.middlewares import expand
from hopwire.middlewares.access import credentials
from hopwire.middlewares.htpasswd import check, kind
from hopwire.middlewares.limits import SharedBuckets, SharedCounts, go_duration
from hopwire.middlewares.paths import encoded_prefix_len, go_template, joined


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/x/$1", "/x/bar/baz"),
        ("/x/${1}y", "/x/bar/bazy"),
        ("/x/$rest", "/x/bar/baz"),
        ("/x/${rest}/", "/x/bar/baz/"),
        ("$$1", "$1"),
        ("$1x", ""),  # Go reads the name "1x": no such group
        ("$9", ""),
        ("cost: $", "cost: $"),
        ("${", "${"),
    ],
)
def test_go_replacement_templates(template: str, expected: str) -> None:
    m = re.search(r"/foo/(?P<rest>.*)", "/foo/bar/baz")
    assert m is not None
    assert go_template(template)(m) == expected


def test_join_path_cleaning_and_encoded_prefixes() -> None:
    assert joined("/a//b/./c/../d/") == "/a/b/d/"
    assert joined("/a/b") == "/a/b" and joined("/") == "/"
    assert joined("/../x") == "/x"
    assert encoded_prefix_len("/a%20b/c", "/a b") == 6
    assert encoded_prefix_len("/api/x", "/api") == 4


@pytest.mark.parametrize("flag", ["-apr1", "-1"])
def test_md5_crypt_secrets_match_openssl(flag: str) -> None:
    for password in ("s3cr3t pw", "", "ü-unicode", "x" * 40):
        secret = subprocess.run(
            ["openssl", "passwd", flag, "-salt", "abcdefgh", password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert kind(secret) == "md5-crypt"
        assert check(password, secret)
        assert not check(password + "!", secret)


def test_bcrypt_and_sha1_secrets() -> None:
    import hashlib

    import bcrypt

    for prefix in ("$2y$", "$2a$", "$2b$"):
        secret = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
        secret = prefix + secret[4:]
        assert kind(secret) == "bcrypt" and check("pw", secret) and not check("px", secret)
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    assert check("pw", sha) and not check("pW", sha)
    assert kind("plain") is None and not check("plain", "plain")
    assert not check("pw", "$2y$04$broken")


def test_basic_credentials_as_go_parses_them() -> None:
    def basic(text: str) -> bytes:
        return b"Basic " + base64.b64encode(text.encode())

    assert credentials(basic("u:p:q")) == ("u", "p:q")  # the first colon splits
    assert credentials(b"basic " + base64.b64encode(b"u:")) == ("u", "")
    assert credentials(basic("nocolon")) is None
    assert credentials(b"Bearer abc") is None
    assert credentials(b"Basic !!!") is None


def test_go_durations() -> None:
    assert go_duration(0.5) == "500ms"
    assert go_duration(1.5) == "1.5s"
    assert go_duration(0.333333333) == "333.333333ms"
    assert go_duration(0.000333) == "333µs"
    assert go_duration(65.2) == "1m5.2s"
    assert go_duration(2.0) == "2s"


def test_token_buckets_are_shared_across_fork() -> None:
    buckets = SharedBuckets()
    rate, burst, max_delay, ttl = 2.0, 3, 0.25, 2.0
    assert [buckets.reserve(7, rate, burst, max_delay, ttl) for _ in range(3)] == [0.0] * 3
    pid = os.fork()
    if pid == 0:  # the child takes from the same bucket: nothing is left
        delay = buckets.reserve(7, rate, burst, max_delay, ttl)
        os._exit(0 if delay > max_delay else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    refused = buckets.reserve(7, rate, burst, max_delay, ttl)
    assert refused > max_delay  # and a refusal takes no token: the next wait is the same
    assert buckets.reserve(7, rate, burst, max_delay, ttl) == pytest.approx(refused, abs=0.05)
    assert buckets.reserve(8, rate, burst, max_delay, ttl) == 0.0  # another source


def test_in_flight_counts() -> None:
    counts = SharedCounts()
    assert counts.take(5, 2) and counts.take(5, 2)
    assert not counts.take(5, 2)
    counts.give_back(5)
    assert counts.take(5, 2)
    assert counts.take(6, 1) and not counts.take(6, 1)


def test_chains_expand_and_loops_are_named() -> None:
    from types import SimpleNamespace as NS

    defined = {
        "a": NS(chain=NS(middlewares=("b", "c"))),
        "b": NS(chain=None),
        "c": NS(chain=NS(middlewares=("b",))),
        "x": NS(chain=NS(middlewares=("y",))),
        "y": NS(chain=NS(middlewares=("x",))),
    }
    assert expand(["a", "b"], defined) == ["b", "b", "b"]
    with pytest.raises(ValueError, match="chain loop: x -> y -> x"):
        expand(["x"], defined)


def test_each_request_stage_names_its_middleware() -> None:
    """compile_stages' owners: the middleware (in expand's order) of each request stage, for
    tracing's detailed spans; a middleware without a request stage owns none."""
    from hopwire.checks import load
    from hopwire.middlewares import compile_stages, span_name

    config = load(
        None,
        [
            "--entryPoints.web.address=:80",
            "--http.middlewares.hdr.headers.customRequestHeaders.X-A=1",
            "--http.middlewares.gz.compress=true",
            "--http.middlewares.strip.stripPrefix.prefixes=/p",
            "--http.middlewares.both.chain.middlewares=gz,strip",
        ],
        {},
    )
    defined = config.http.middlewares
    owners: list[int] = []
    requests, response = compile_stages(["hdr", "both"], defined, None, None, owners)
    assert expand(["hdr", "both"], defined) == ["hdr", "gz", "strip"]
    assert len(requests) == 2 and owners == [0, 2]
    assert response is not None
    assert [span_name(defined[n]) for n in ("hdr", "gz", "strip")] == [
        "Headers",
        "Compress",
        "StripPrefix",
    ]
