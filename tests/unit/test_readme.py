"""The README tells the truth about the code: its reference table is the generated one."""

from __future__ import annotations

import re

from hopwire.config.reference import markdown, rows
from tests.harness import ROOT

README = ROOT / "README.md"


def readme_table() -> str:
    text = README.read_text()
    start = text.index("### Reference\n")
    table_start = text.index("| key |", start)
    end = text.index("\n\n", table_start)
    return text[table_start:end]


def test_reference_table_is_generated_from_the_schema() -> None:
    assert readme_table() == markdown(), "regenerate: hopwire --help-config --markdown"


def test_reference_has_every_section_and_no_placeholders() -> None:
    table = markdown()
    assert "_MISSING_TYPE" not in table and "None" not in table
    keys = {key for key, _, _ in rows()}
    for section in ("tracing", "accessLog", "http.services.<name>.loadBalancer.healthCheck"):
        assert section in keys
    assert "tracing.otlp.grpc.tls.ca" in keys
    assert "tracing.otlp.grpc.tls.insecureSkipVerify" not in keys  # refused for gRPC
    assert "tracing.otlp.http.tls.insecureSkipVerify" in keys
    for _, default, _ in rows():
        assert default in ("required", "off", "unset", "—") or re.fullmatch(r"`[^`]*`", default)


def test_readme_points_only_inside_the_repository() -> None:
    text = README.read_text()
    assert "../shared" not in text
    assert not re.search(r"\]\((\.\./|/)", text), "a link that leaves the repository"
    assert not re.search(r"\bissues? #?\d", text, re.IGNORECASE), "no issue numbers"
