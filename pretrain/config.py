"""Typed run configuration: dataclasses loaded from a JSON or YAML file and overridden from the command line.

A file has up to five sections plus ``preset``::

    preset: mpm            # model sizes start from pretrain.model.PRESETS[preset]
    model: {joints: 16}    # then these fields override them
    mask: {mode: spatiotemporal, joints_masked: 5, frame_ratio: 0.6}
    objective: {lambda_2d: 2.0, lambda_3d: 3.0}
    data: {shards: /data/shards, mixture: base, batch_size: 16}
    train: {steps: 1000, lr: 1.0e-3, out_dir: runs/base}

Overrides are ``section.field=value`` strings (``--set train.lr=1e-4``); values are parsed as YAML scalars
(numbers, true/false, null, lists ``[a, b]``) and checked against the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pretrain.masking import MaskConfig
from pretrain.model import ModelConfig, preset
from pretrain.objective import ObjectiveConfig


@dataclass
class DataConfig:
    """The stream (:func:`shards.stream.make_loader`): ``shards`` folder, ``mixture`` name (or ``datasets``
    taken whole), ``clip_len`` T (default: ``model.frames``), window ``stride``, per-rank ``batch_size``,
    loader ``num_workers``, horizontal ``flip``, ``steps_per_epoch`` (default: one pass of the windows)."""

    shards: str = ""
    mixture: str | None = "large"
    datasets: list[str] | None = None
    clip_len: int | None = None
    stride: int = 1
    batch_size: int = 16
    num_workers: int = 0
    flip: bool = True
    steps_per_epoch: int | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping. AdamW (``lr``, ``weight_decay``, ``betas``); the learning rate rises
    linearly for ``warmup_steps`` then follows a cosine down to ``lr * min_lr_ratio`` at ``steps``;
    ``grad_clip`` (global L2 norm, 0 = off) and ``grad_accum`` go into the DeepSpeed config. Checkpoints
    every ``checkpoint_every`` steps and at the end; metrics every ``log_every`` steps; ``threads`` torch
    CPU threads per rank (0: torch's default); ``deepspeed`` config file (default
    ``pretrain/configs/cpu_fp32.json`` on CPU, ``gpu_bf16_zero1.json`` on GPU); ``stop_after``: end this
    invocation after that many steps with a checkpoint (time-limited allocations; resume continues)."""

    out_dir: str = "runs/pretrain"
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    grad_accum: int = 1
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    threads: int = 0
    deepspeed: str | None = None
    stop_after: int | None = None


@dataclass
class Config:
    """A whole pretraining run. ``model.joints`` also selects the loader's joint set (16 or 17)."""

    preset: str = "mpm"
    model: ModelConfig = field(default_factory=lambda: preset("mpm"))
    mask: MaskConfig = field(default_factory=MaskConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def clip_len(self) -> int:
        return self.data.clip_len or self.model.frames


SECTIONS = ("model", "mask", "objective", "data", "train")


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check/convert a parsed value against a dataclass field type (int, float, bool, str, lists, Optional)."""
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
    if hint is str and isinstance(value, str):
        return value
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _build(cls: type, values: dict, where: str, base: Any = None) -> Any:
    """Dataclass ``cls`` from ``values`` (unknown keys are errors), on top of ``base`` or the defaults."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    current = asdict(base) if base is not None else {}
    current.update({k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()})
    return cls(**current)


def config_from_dict(raw: dict, where: str = "config") -> Config:
    """Config from a nested mapping (file contents); raises ValueError naming the offending key."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(SECTIONS) - {"preset"})
    if unknown:
        raise ValueError(f"{where}: unknown section(s) {unknown}; known: preset, {', '.join(SECTIONS)}")
    name = raw.get("preset", "mpm")
    try:
        base_model = preset(name)
    except KeyError as exc:
        raise ValueError(f"{where}: preset: {exc.args[0]}") from None
    return Config(
        preset=name,
        model=_build(ModelConfig, raw.get("model", {}), f"{where}: model", base_model),
        mask=_build(MaskConfig, raw.get("mask", {}), f"{where}: mask"),
        objective=_build(ObjectiveConfig, raw.get("objective", {}), f"{where}: objective"),
        data=_build(DataConfig, raw.get("data", {}), f"{where}: data"),
        train=_build(TrainConfig, raw.get("train", {}), f"{where}: train"),
    )


def read_config_file(path: str | Path) -> dict:
    """Parsed JSON (``.json``) or YAML (anything else) file; raises ValueError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the config: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return raw or {}


def set_value(raw: dict, key: str, value: Any) -> None:
    """Set ``preset`` or ``section.field`` in a nested config mapping (in place)."""
    if key == "preset":
        raw["preset"] = value
        return
    section, dot, name = key.partition(".")
    if not dot or section not in SECTIONS or not name:
        raise ValueError(f"config key {key!r}: must be preset or one of {SECTIONS} followed by .field")
    raw[section] = {**(raw.get(section) or {}), name: value}


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Copy of ``raw`` with ``section.field=value`` strings applied (values parsed as YAML scalars)."""
    out = dict(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected section.field=value")
        set_value(out, key, yaml.safe_load(text) if text else "")
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Config from an optional file plus overrides (see the module docstring)."""
    raw = read_config_file(path) if path else {}
    return config_from_dict(apply_overrides(raw, overrides or []), str(path or "config"))
