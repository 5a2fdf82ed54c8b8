"""The docs tell the truth about the code: the generated tables are current, every link
resolves, the README's configuration loads, and nothing points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hopwire import errors
from hopwire.checks import load
from hopwire.config.reference import markdown, rows
from tests.harness import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "bench" / "NOTES.md"]


def between(text: str, start: str, end: str) -> str:
    a = text.index(start) + len(start)
    return text[a : text.index(end, a)].strip()


def test_reference_table_is_generated_from_the_schema() -> None:
    text = (ROOT / "docs" / "reference.md").read_text()
    table_start = text.index("| key |")
    end = text.find("\n\n", table_start)
    table = text[table_start : end if end >= 0 else None].strip()
    assert table == markdown(), "regenerate: make docs"


def test_error_table_is_generated_from_the_kinds() -> None:
    text = (ROOT / "docs" / "http.md").read_text()
    table = between(text, "<!-- errors:start -->", "<!-- errors:end -->")
    assert table == errors.markdown(), "regenerate: make docs"
    for kind in errors.KINDS:
        assert kind.doc, f"{kind.name}: say what happened"


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


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.*)", line)
        if heading:
            found.add(slug(heading[1]))
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for link in links(page):
            if re.match(r"[a-z]+:", link):
                continue  # a web address
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and (target.suffix != ".md" or anchor not in anchors(target)):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
            elif ROOT not in target.parents:
                broken.append(f"{page.relative_to(ROOT)}: {link} (outside the repository)")
    assert not broken, "\n".join(broken)


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#nothing) [gone](missing.md)\n")
    found = links(page)
    assert found == ["#title", "#nothing", "missing.md"]
    assert "title" in anchors(page) and "nothing" not in anchors(page)


def test_docs_point_only_inside_the_repository() -> None:
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text, page
        assert not re.search(r"\bissues? #?\d", text, re.IGNORECASE), f"{page}: an issue number"


def test_the_readme_is_a_front_page_and_its_configuration_loads(tmp_path: Path) -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 220
    block = between(text, "## A minimal configuration\n\n```yaml\n", "```")
    path = tmp_path / "hopwire.yml"
    path.write_text(block)
    config = load(str(path), [], {})
    assert config.http.routers["api"].service == "api"
    assert yaml.safe_load(block)["tracing"]["sampleRate"] == 0.1
