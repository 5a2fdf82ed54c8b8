"""The configuration reference, generated from the schema.

``hopwire --help-config`` prints it as text, ``hopwire --help-config --markdown`` as the table
in docs/reference.md (a test checks that it holds exactly this table).  Every key has a row:
sections too (``tracing``, ``accessLog``, ``…healthCheck``), named entries as ``<name>`` and
list items as ``[]``.  Defaults are written one way: a value in backticks, ``required``,
``off`` for a section that is absent unless given, ``unset`` for a switch that inherits, and
``—`` for an empty list or mapping.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from hopwire.config.schema import Config
from hopwire.config.validate import type_hints, unwrap_optional
from hopwire.config.values import DURATION, REQUIRED


def _duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is REQUIRED:
        return "required"
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        raise TypeError(f"schema field {f.name} has no default")  # a bug in the schema
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if f.metadata.get("kind") == DURATION:
        return f"`{_duration(value)}`"
    if isinstance(value, str | int | float):
        return f"`{value}`" if value != "" else "—"
    if isinstance(value, tuple | Mapping) and not value:
        return "—"
    if isinstance(value, tuple):
        return (
            "`" + ", ".join(_duration(v) if isinstance(v, float) else str(v) for v in value) + "`"
        )
    raise TypeError(f"schema field {f.name}: default {value!r} has no written form")


def rows() -> list[tuple[str, str, str]]:
    """(key, default, meaning) of every key, in schema order."""
    out: list[tuple[str, str, str]] = []

    def walk(cls: Any, prefix: str) -> None:
        hints = type_hints(cls)
        for f in dataclasses.fields(cls):
            declared = hints[f.name]
            tp = unwrap_optional(declared)
            optional = tp is not declared
            origin = typing.get_origin(tp)
            key = f"{prefix}{f.name}"
            doc = f.metadata.get("doc", "")
            if dataclasses.is_dataclass(tp):
                default = "required" if f.default is REQUIRED else ("off" if optional else "—")
                out.append((key, default, doc))
                walk(tp, key + ".")
            elif origin is Mapping and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                out.append((f"{key}.<name>", "—", doc))
                walk(typing.get_args(tp)[1], key + ".<name>.")
            elif origin is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                out.append((f"{key}[]", "required" if f.default is REQUIRED else "—", doc))
                walk(typing.get_args(tp)[0], key + "[].")
            else:
                out.append((key, _default(f), doc))

    walk(Config, "")
    return out


def markdown() -> str:
    """The reference as a Markdown table (docs/reference.md)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {default} | {doc} |" for key, default, doc in rows()]
    return "\n".join(lines)


def reference() -> str:
    """The reference as text, one key per line: key, default, meaning."""
    table = [(key, default.replace("`", ""), doc) for key, default, doc in rows()]
    width = max(len(key) for key, _, _ in table)
    dwidth = max(len(default) for _, default, _ in table)
    return "\n".join(f"{key:<{width}}  {default:<{dwidth}}  {doc}" for key, default, doc in table)
