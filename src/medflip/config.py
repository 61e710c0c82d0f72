"""Nested dataclass configs: load from YAML/JSON, override from `--section.key value` flags.

One mechanism for every command: a config file gives values, flags override them, and an unknown
key is an error that lists the valid keys (a typo never silently falls back to a default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from medflip.errors import UserError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/JSON/flag value to the field's annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] / X | None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None or value == "none" else _coerce(value, args[0], key)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        args = typing.get_args(tp)
        item_tp = args[0]
        return tuple(_coerce(v, item_tp, key) for v in items)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError) as e:
        raise UserError(f"config key {key!r}: cannot read {value!r} as {tp.__name__}") from e
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "", base: Any = None) -> T:
    """Build dataclass `cls` from a nested dict; unknown keys raise UserError listing the valid ones.

    Keys not in `data` keep the defaults of the config they belong to: a section given in part starts from
    its parent's default for it (`base`), not from the section class's own defaults, so a config class
    with its own section defaults (the demo's DemoConfig) keeps them when one key of a section is set.
    """
    if not isinstance(data, dict):
        raise UserError(f"config section {prefix or '<root>'!r} must be a mapping, got {type(data).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        valid = ", ".join(sorted(types_))
        raise UserError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; valid keys here: {valid}"
        )
    if base is None:
        base = cls()
    kwargs = {}
    for name, value in data.items():
        tp = types_[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.", getattr(base, name))
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return dataclasses.replace(base, **kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults <- config file (YAML or JSON) <- overrides {"a.b": value}."""
    data: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(cls, data)


def _leaves(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, Any, Any]]:
    """(dotted key, type, default) of every leaf, the defaults read from an instance of `cls`."""
    defaults = cls() if defaults is None else defaults
    out = []
    for f in dataclasses.fields(cls):
        tp = _field_types(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaves(tp, f"{prefix}{f.name}.", getattr(defaults, f.name))
        else:
            out.append((prefix + f.name, tp, getattr(defaults, f.name)))
    return out


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add `--config FILE` and one `--section.key VALUE` flag per config leaf."""
    parser.add_argument("--config", help="YAML or JSON config file (flags below override it)")
    group = parser.add_argument_group("config (override any key)")
    for dotted, _tp, default in _leaves(cls):
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            f"--{dotted}", dest=f"cfg:{dotted}", default=None, metavar="V", help=f"default: {shown}"
        )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    return load_config(cls, getattr(args, "config", None), overrides)
