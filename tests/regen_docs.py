"""Rewrite the generated parts of the docs: the configuration reference (docs/reference.md)
and the error kinds (docs/http.md).  ``make docs``; tests/unit/test_docs.py checks them."""

from __future__ import annotations

from hopwire import errors
from hopwire.config.reference import markdown
from tests.harness import ROOT

REFERENCE_HEAD = """# Configuration reference

Every key of the configuration, its default and what it does, generated from the schema
(`hopwire --help-config --markdown`). How keys are set (file, flags, environment) and which
wins: [Configuration](configuration.md).

"""


def main() -> None:
    (ROOT / "docs" / "reference.md").write_text(REFERENCE_HEAD + markdown() + "\n")
    page = ROOT / "docs" / "http.md"
    text = page.read_text()
    start, end = "<!-- errors:start -->", "<!-- errors:end -->"
    a = text.index(start) + len(start)
    b = text.index(end)
    page.write_text(text[:a] + "\n" + errors.markdown() + "\n" + text[b:])


if __name__ == "__main__":
    main()
