"""The one configuration mechanism of both training stages: typed dataclasses, read from a JSON or YAML file,
overridden from the command line.

A stage's config is a root dataclass whose fields are *sections* (dataclasses, e.g. ``model``, ``data``,
``train``) and optionally plain top-level values (e.g. ``preset``). A file gives any subset::

    preset: tiny
    data: {shards: /data/shards, batch_size: 16}
    train: {steps: 1000, lr: 1.0e-3, out: runs/base}

Overrides are ``KEY=VALUE`` strings, ``KEY`` a top-level name or ``section.field`` (``--set train.lr=1e-4``);
values are parsed as YAML scalars (numbers, true/false, null, lists ``[a, b]``, mappings ``{k: v}``) and
checked against the field's type. A stage's command line (:func:`parser`) has ``--config`` (a file, or the
name of a config the package ships), repeatable ``--set``, and shortcut flags derived from the fields they set
(type, choices of a bool, default and help all come from the dataclass; nothing is declared twice). Precedence:
defaults, then the file, then the shortcut flags, then ``--set``. Each field is documented once, in its
section's docstring.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ingest.cli import user_errors


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check/convert a parsed value against a dataclass field type (int, float, bool, str, lists, dicts,
    Optional)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0])
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_convert(v, item, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping {{key: value}}, got {value!r}")
        key_hint, item = typing.get_args(hint)
        return {_convert(k, key_hint, where): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)  # a subject "1" or a path "2024" read as a number is still its text
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _build(cls: type, values: dict, where: str, base: Any) -> Any:
    """Dataclass ``cls`` from ``values`` (unknown keys are errors) on top of the instance ``base``; the
    dataclass's own ``__post_init__`` checks run on the result."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    current = dataclasses.asdict(base)
    current.update({k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()})
    try:
        return cls(**current)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def at_least(section: str, obj: Any, minimum: float, *names: str) -> None:
    """Raise ValueError naming ``section.name`` when a field of ``obj`` named in ``names`` is below ``minimum``
    (None, an unset optional field, passes)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < minimum:
            raise ValueError(f"{section}.{name} must be >= {minimum}, got {value}")


def sections(cls: type) -> dict[str, type]:
    """Section name -> dataclass of a root config class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def build(cls: type, raw: dict | None, where: str = "config") -> Any:
    """A root config of class ``cls`` from a nested mapping (a file's contents); raises ValueError naming the
    offending key. The top-level values are read first; ``cls.defaults(**top)``, when the class has it, then
    gives the base the sections start from (pretraining's model sizes come from its ``preset``)."""
    raw = dict(raw or {})
    hints = typing.get_type_hints(cls)
    parts = sections(cls)
    tops = [f.name for f in dataclasses.fields(cls) if f.name not in parts]
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ValueError(f"{where}: unknown section(s) {unknown}; known: {', '.join([*tops, *parts])}")
    top = {k: _convert(raw[k], hints[k], f"{where}: {k}") for k in tops if k in raw}
    try:
        base = cls.defaults(**top) if hasattr(cls, "defaults") else cls(**top)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{where}: {exc.args[0]}") from None
    values = {
        name: _build(kind, raw.get(name) or {}, f"{where}: {name}", getattr(base, name)) for name, kind in parts.items()
    }
    return dataclasses.replace(base, **values)


def read_file(path: str | Path) -> dict:
    """Parsed JSON (``.json``) or YAML (anything else) file; raises ValueError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the config: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return raw or {}


def config_path(name: str | Path, shipped: Path) -> Path:
    """A config file: ``name`` itself when it exists, else ``shipped/<name>.yaml`` (a config installed with
    the package, e.g. ``demo``). Raises FileNotFoundError listing the shipped ones."""
    path = Path(name)
    if path.is_file():
        return path
    if (shipped / f"{name}.yaml").is_file():
        return shipped / f"{name}.yaml"
    known = sorted(p.stem for p in shipped.glob("*.yaml"))
    raise FileNotFoundError(f"{name}: no such config file, nor a shipped config (shipped: {known})")


def set_value(raw: dict, key: str, value: Any, cls: type) -> None:
    """Set the top-level ``key`` or ``section.field`` of ``cls`` in a nested config mapping (in place)."""
    parts = sections(cls)
    tops = [f.name for f in dataclasses.fields(cls) if f.name not in parts]
    if key in tops:
        raw[key] = value
        return
    section, dot, name = key.partition(".")
    if not dot or section not in parts or not name:
        raise ValueError(
            f"config key {key!r}: must be {' or '.join(tops) or 'a section'}"
            f"{' or one' if tops else ''} of {list(parts)} followed by .field"
        )
    raw[section] = {**(raw.get(section) or {}), name: value}


def apply_overrides(raw: dict, overrides: list[str], cls: type) -> dict:
    """Copy of ``raw`` with ``KEY=VALUE`` strings applied (values parsed as YAML scalars)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected section.field=value")
        set_value(out, key, yaml.safe_load(text) if text else "", cls)
    return out


def load(cls: type, path: str | Path | None = None, overrides: list[str] | None = None) -> Any:
    """A root config from an optional file plus overrides."""
    raw = read_file(path) if path else {}
    return build(cls, apply_overrides(raw, overrides or [], cls), str(path or "config"))


def _field(cls: type, key: str) -> tuple[Any, Any]:
    """(type hint, default) of the top-level name or ``section.field`` ``key`` of root config ``cls``."""
    hints, parts = typing.get_type_hints(cls), sections(cls)
    section, dot, name = key.partition(".")
    if dot:
        owner, base = parts[section], getattr(cls.defaults() if hasattr(cls, "defaults") else cls(), section)
        return typing.get_type_hints(owner)[name], getattr(base, name)
    default = next(f for f in dataclasses.fields(cls) if f.name == key).default
    return hints[key], default


def add_shortcuts(p: argparse.ArgumentParser, cls: type, shortcuts: dict[str, str]) -> None:
    """One flag per ``{flag: key}`` entry, its type, form and help derived from the field ``key`` sets:
    ``--flag VALUE`` (int, float, str), ``--flag A B ...`` (lists), ``--flag`` / ``--no-flag`` (bools).
    Flags left out set nothing (the file or the default holds)."""
    for flag, key in shortcuts.items():
        hint, default = _field(cls, key)
        kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = kinds[0]
        shown = "" if default is dataclasses.MISSING else f", default {default!r}"
        help_text = f"sets {key}{shown}"
        name = "--" + flag.replace("_", "-")
        if kind is bool:
            p.add_argument(name, dest=flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            p.add_argument(name, dest=flag, nargs="+", type=item, default=None, help=help_text)
        else:
            p.add_argument(name, dest=flag, type=kind, default=None, help=help_text)


def config_keys(cls: type) -> str:
    """Every key of a root config with its default, one per line (the ``--help`` epilog)."""
    base = cls.defaults() if hasattr(cls, "defaults") else cls()
    lines = []
    for f in dataclasses.fields(cls):
        value = getattr(base, f.name)
        if dataclasses.is_dataclass(value):
            lines += [f"  {f.name}.{g.name} = {getattr(value, g.name)!r}" for g in dataclasses.fields(value)]
        else:
            lines.append(f"  {f.name} = {value!r}")
    return "\n".join(lines)


def parser(cls: type, prog: str, description: str, shortcuts: dict[str, str], shipped: Path) -> argparse.ArgumentParser:
    """The command line of a stage: ``--config``, ``--set``, ``--resume``, ``--no-progress``, the derived
    shortcut flags, and the launcher's ``--local_rank`` (hidden); the epilog lists every config key."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"config keys (--set KEY=VALUE) and their defaults:\n{config_keys(cls)}",
    )
    p.add_argument(
        "--config",
        help=f"JSON or YAML run config, or the name of a shipped one "
        f"({', '.join(sorted(x.stem for x in shipped.glob('*.yaml')))})",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.lr=1e-4 (repeatable; after the flags below)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoints/latest (or the last complete checkpoint before it)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run OUT holds (without it, or --resume, it is refused)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_shortcuts(p, cls, shortcuts)
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return p


def from_args(cls: type, args: argparse.Namespace, shortcuts: dict[str, str], shipped: Path) -> Any:
    """The root config an invocation of :func:`parser` describes (precedence: module docstring).

    Raises:
        ValueError / FileNotFoundError: a bad file, key or value, naming it.
    """
    path = config_path(args.config, shipped) if args.config else None
    raw = read_file(path) if path else {}
    for flag, key in shortcuts.items():
        if getattr(args, flag) is not None:
            set_value(raw, key, getattr(args, flag), cls)
    return build(cls, apply_overrides(raw, args.overrides, cls), str(path or "config"))


def cli(
    cls: type, argv: list[str] | None, prog: str, description: str, shortcuts: dict[str, str], shipped: Path
) -> tuple[Any, argparse.Namespace]:
    """Parse a stage's command line (:func:`parser`) into (its root config, the parsed arguments); a bad
    file, key or value ends the command with one line naming it, exit status 2 (:mod:`ingest.cli`)."""
    args = parser(cls, prog, description, shortcuts, shipped).parse_args(argv)
    with user_errors(prog):
        return from_args(cls, args, shortcuts, shipped), args
