"""Frozen dataclasses from TOML: the schema rules the gate's config and ``centre.toml`` share.

A field's type annotation is its schema and an optional ``check`` in its metadata
(:func:`opt`) validates the value; unknown keys and sections are errors, every problem is
collected with its dotted path so one run reports them all, and relative paths are taken
from the file's folder. Part of agent.core: imports nothing of the project but errors.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from agent.core.errors import ConfigError

Check = Callable[[Any], str | None]


def opt(default: Any = dataclasses.MISSING, check: Check | None = None) -> Any:
    """A config field with an optional validator; no default means the key is required."""
    return field(default=default, metadata={"check": check} if check else {})


def resolve_path(cli_value: str | None, env_name: str, default: Path) -> Path:
    """``--config``, else the environment variable, else the default (gate and centre)."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(env_name)
    return Path(env) if env else default


def read_toml(path: Path, example: str) -> dict[str, Any]:
    """A config file's TOML table; ConfigError saying what to do when it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: copy {example} there, or pass --config FILE", str(path),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", str(path)) from None


def build_sections(root: type, raw: Mapping[str, Any], base_dir: Path,
                   problems: list[str]) -> dict[str, Any]:
    """Every section of ``root`` (a dataclass whose fields but ``path`` are sections) from
    a parsed TOML document: the ones that built, with every problem appended."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(root)
    sections = [f for f in dataclasses.fields(root) if f.name != "path"]
    known = {f.name for f in sections}
    for key in raw:
        if key not in known:
            problems.append(f"{key}: unknown section (known: {', '.join(sorted(known))})")
    for f in sections:
        table = raw.get(f.name)
        if table is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{f.name}: missing section [{f.name}]")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{f.name}: must be a table [{f.name}]")
            continue
        built = build_section(dataclass_in(hints[f.name]), table, f.name, base_dir, problems)
        if built is not None:
            values[f.name] = built
    return values


def dataclass_in(annotation: Any) -> type:
    """The dataclass in a section's annotation (``MqttSection | None`` -> MqttSection)."""
    for candidate in typing.get_args(annotation) or (annotation,):
        if dataclasses.is_dataclass(candidate):
            return candidate  # type: ignore[return-value]
    raise TypeError(f"no dataclass in {annotation!r}")


def build_section(
    cls: type, table: Mapping[str, Any], prefix: str, base_dir: Path, problems: list[str]
) -> Any:
    """One ``[prefix]`` table as a ``cls``, or None with every problem appended (dotted)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for key in table:
        if key not in fields:
            problems.append(f"{prefix}.{key}: unknown key (known: {', '.join(fields)})")
    for name, f in fields.items():
        dotted = f"{prefix}.{name}"
        if name not in table:
            if f.default is dataclasses.MISSING:
                problems.append(f"{dotted}: missing")
            continue
        ok, value = _coerce(table[name], hints[name], base_dir)
        if not ok:
            problems.append(f"{dotted}: {value}")
            continue
        check = f.metadata.get("check")
        message = check(value) if check else None
        if message:
            problems.append(f"{dotted}: {message}")
            continue
        kwargs[name] = value
    if len(problems) > before:
        return None
    return cls(**kwargs)


def _coerce(value: Any, annotation: Any, base_dir: Path) -> tuple[bool, Any]:
    """Return (True, converted) or (False, message saying what was expected)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        for option in options:
            if option is type(None):
                continue
            ok, converted = _coerce(value, option, base_dir)
            if ok:
                return True, converted
        names = " or ".join(_type_name(o) for o in options if o is not type(None))
        return False, f"expected {names}, got {_describe(value)}"
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value in choices:
            return True, value
        return False, f"expected one of {', '.join(map(repr, choices))}, got {_describe(value)}"
    if annotation is bool:
        return (
            (True, value)
            if isinstance(value, bool)
            else (False, f"expected true or false, got {_describe(value)}")
        )
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        return False, f"expected a whole number, got {_describe(value)}"
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, f"expected a number, got {_describe(value)}"
    if annotation is str:
        return (
            (True, value)
            if isinstance(value, str)
            else (False, f"expected a string, got {_describe(value)}")
        )
    if annotation is Path:
        if not isinstance(value, str) or not value:
            return False, f"expected a path string, got {_describe(value)}"
        path = Path(value).expanduser()
        return True, path if path.is_absolute() else (base_dir / path)
    raise TypeError(f"config schema uses unsupported type {annotation!r}")


def _type_name(annotation: Any) -> str:
    return {
        bool: "true/false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        Path: "a path",
    }.get(annotation, str(annotation))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
