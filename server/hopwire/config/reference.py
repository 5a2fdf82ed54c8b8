"""The configuration reference, generated from the schema (``hopwire --help-config``)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from hopwire.config.schema import Config
from hopwire.config.validate import type_hints, unwrap_optional
from hopwire.config.values import DURATION, REQUIRED


def reference() -> str:
    """The configuration reference, generated from the schema (used for the README)."""
    lines: list[str] = []

    def walk(cls: Any, prefix: str) -> None:
        hints = type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = unwrap_optional(hints[f.name])
            origin = typing.get_origin(tp)
            key = f"{prefix}{f.name}"
            doc = f.metadata.get("doc", "")
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
            elif origin is Mapping and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                lines.append(f"| `{key}.<name>` | | {doc} |")
                walk(typing.get_args(tp)[1], key + ".<name>.")
            elif origin is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                lines.append(f"| `{key}[]` | | {doc} |")
                walk(typing.get_args(tp)[0], key + "[].")
            else:
                default = f.default
                if default is REQUIRED:
                    shown = "required"
                elif f.metadata.get("kind") == DURATION:
                    shown = f"{default:g}s"
                elif default in ("", ()):
                    shown = "—"
                else:
                    shown = (
                        f"`{default}`" if not isinstance(default, bool) else str(default).lower()
                    )
                lines.append(f"| `{key}` | {shown} | {doc} |")

    walk(Config, "")
    return "| key | default | meaning |\n| --- | --- | --- |\n" + "\n".join(lines)
