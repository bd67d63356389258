"""The pretraining run configuration, read and overridden by the one mechanism of both stages
(:mod:`training.settings`). A file has up to six sections plus ``preset``::

    preset: mpm            # MPM's sizes start from pretrain.model.PRESETS[preset]
    model: {joints: 16}    # then these fields override them
    mask: {mode: spatiotemporal, joints_masked: 5, frame_ratio: 0.6}
    objective: {kind: mpm, lambda_2d: 2.0, lambda_3d: 3.0}
    data: {shards: /data/shards, mixture: base, batch_size: 16}
    train: {steps: 1000, lr: 1.0e-3, out: runs/base}

or, for MotionBERT's objective on its network (``mask`` and the MPM weights of ``objective`` then unused)::

    model: {backbone: dstformer, size: lite, frames: 243}   # arguments: {channels: 64} for a smaller one
    objective: {kind: motionbert}
    motionbert: {mask_ratio: 0.05, mask_t_ratio: 0.1, lambda_scale: 0.5, lambda_velocity: 20.0}

Overrides are ``section.field=value`` strings (``--set train.lr=1e-4``,
``--set 'model.arguments={channels: 64, layers: 2}'``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pretrain import backbones
from pretrain.masking import MaskConfig
from pretrain.model import PRESETS, ModelConfig
from pretrain.model import preset as model_preset
from pretrain.motionbert import MotionBERTConfig
from pretrain.objective import ObjectiveConfig
from training import settings

# the sizes of MPM's network beside joints and frames (ModelConfig's fields), which another backbone does not read
MPM_SIZES = ("channels", "hidden", "layers", "heads", "decoder_layers", "dropout", "attn_dropout")


@dataclass
class ModelSection(ModelConfig):
    """The network pretrained: MPM's (``backbone: mpm``, sizes from ``preset`` overridden by the fields of
    :class:`pretrain.model.ModelConfig`), or ``backbone`` another lifter of :mod:`pretrain.backbones`
    (``dstformer``, MotionBERT's, the one ``objective.kind: motionbert`` pretrains) at its released ``size``
    (``full`` or ``lite``) with ``joints`` and ``frames`` (its longest window; the clip length by default) and
    ``arguments``: constructor arguments beyond the size's (the backbone's docstring; e.g. ``{channels: 64,
    layers: 2}`` for a small network). MPM's other sizes (``channels``, ``layers``, ...) do not apply to another
    backbone: a config that changes them is refused (:class:`Config`).

    Raises:
        ValueError: an unknown backbone or size, ``size`` / ``arguments`` with MPM, an argument the backbone does
            not take (``joints`` and ``frames`` are this section's fields), a non-finite argument.
    """

    backbone: str = "mpm"
    size: str = "full"
    arguments: dict[str, int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone not in ("mpm", *backbones.NAMES):
            raise ValueError(f"model.backbone must be one of {['mpm', *backbones.NAMES]}, got {self.backbone!r}")
        if self.backbone == "mpm":
            if self.size != "full":
                raise ValueError("model.size is another backbone's released size; MPM's sizes come from preset")
            if self.arguments:
                raise ValueError(
                    "model.arguments are another backbone's constructor arguments; MPM's sizes are model.channels, "
                    "model.layers, ... (or preset)"
                )
            return
        if self.size not in backbones.sizes(self.backbone):
            known = backbones.sizes(self.backbone)
            raise ValueError(f"model.size: {self.backbone} has sizes {known}, not {self.size!r}")
        taken = set(backbones.argument_names(self.backbone)) - {"joints", "frames"}
        unknown = sorted(set(self.arguments) - taken)
        if unknown:
            raise ValueError(
                f"model.arguments: the {self.backbone} backbone takes no {unknown} here; it takes {sorted(taken)} "
                "(joints and frames are model.joints and model.frames)"
            )
        for key, value in self.arguments.items():
            if not math.isfinite(value):
                raise ValueError(f"model.arguments.{key} must be finite, got {value}")

    def network(self) -> ModelConfig:
        """MPM's sizes (this section without ``backbone``, ``size``, ``arguments``)."""
        return ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})

    def backbone_network(self) -> backbones.Backbone:
        """The non-MPM ``backbone``, randomly initialised (ValueError for sizes it cannot take)."""
        try:
            return backbones.build(self.backbone, self.size, joints=self.joints, frames=self.frames, **self.arguments)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model ({self.backbone}): {exc}") from None


@dataclass
class DataConfig:
    """The stream (:func:`shards.stream.make_loader`): ``shards`` folder, ``mixture`` name (or ``datasets``
    taken whole), ``mixtures_file``: a JSON file of user-defined mixtures that ``mixture`` may name (the layout
    of ``shards/mixtures.json``), ``clip_len`` T (default: ``model.frames``), window ``stride``, per-rank
    ``batch_size``, loader ``num_workers``, horizontal ``flip``, ``steps_per_epoch`` (default: one pass of the windows),
    ``shuffle_segments``: decoded segments open in each dataset's window shuffle buffer (about 0.4 MB each,
    per dataset and loader worker; :func:`shards.stream.make_loader`); ``max_corrupt``: the fraction of the
    selected shards that may be skipped as corrupt before the run stops (``LoaderOptions.max_corrupt``)."""

    shards: str = ""
    mixture: str | None = "large"
    mixtures_file: str | None = None
    datasets: list[str] | None = None
    clip_len: int | None = None
    stride: int = 1
    batch_size: int = 16
    num_workers: int = 0
    flip: bool = True
    steps_per_epoch: int | None = None
    shuffle_segments: int = 256
    max_corrupt: float = 0.05

    def __post_init__(self) -> None:
        settings.at_least("data", self, 1, "clip_len", "stride", "batch_size", "steps_per_epoch", "shuffle_segments")
        settings.at_least("data", self, 0, "num_workers")
        if not 0.0 <= self.max_corrupt <= 1.0:
            raise ValueError(f"data.max_corrupt must be in [0, 1], got {self.max_corrupt}")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping. ``out``: the run folder. AdamW (``lr``, ``weight_decay``, ``betas``);
    the learning rate rises linearly for ``warmup_steps`` then follows a cosine down to ``lr * min_lr_ratio``
    at ``steps``; ``grad_clip`` (global L2 norm, 0 = off) and ``grad_accum`` (micro batches per optimizer
    step) go into the DeepSpeed config. Checkpoints every ``checkpoint_every`` steps and at the end;
    metrics at the first step, every ``log_every`` steps and at the end; ``threads`` torch CPU threads per
    rank (0: torch's default); ``deepspeed_config``: the DeepSpeed JSON, precision, ZeRO and communication
    only, a file or a shipped one's name (default ``training/deepspeed/cpu_fp32.json`` on CPU,
    ``gpu_bf16_zero1.json`` on GPU; ``cpu_bf16``: bf16 autocast on a CPU with native bf16);
    ``stop_after``: end this invocation after that many steps with a checkpoint (time-limited
    allocations; resume continues)."""

    out: str = "runs/pretrain"
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
    deepspeed_config: str | None = None
    stop_after: int | None = None

    def __post_init__(self) -> None:
        settings.at_least("train", self, 1, "steps", "grad_accum", "checkpoint_every", "log_every", "stop_after")
        settings.at_least("train", self, 0, "warmup_steps", "weight_decay", "grad_clip", "threads")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")


def _section(cfg: ModelConfig) -> ModelSection:
    return ModelSection(**asdict(cfg))


@dataclass
class Config:
    """A whole pretraining run. ``model.joints`` also selects the loader's joint set (16 or 17).
    ``objective.kind`` picks the network it trains: ``mpm`` MPM's (``model.backbone: mpm``), ``motionbert`` a
    sequence-to-sequence backbone (``model.backbone: dstformer``).

    Raises:
        ValueError: an objective and a backbone that do not go together; MPM's sizes changed for another backbone.
    """

    preset: str = "mpm"
    model: ModelSection = field(default_factory=lambda: _section(model_preset("mpm")))
    mask: MaskConfig = field(default_factory=MaskConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    motionbert: MotionBERTConfig = field(default_factory=MotionBERTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        m, kind = self.model, self.objective.kind
        if kind == "mpm" and m.backbone != "mpm":
            raise ValueError(
                f"model.backbone={m.backbone}: objective.kind=mpm pretrains MPM's network (model.backbone=mpm); "
                "another backbone pretrains with objective.kind=motionbert"
            )
        if kind == "motionbert":
            if m.backbone == "mpm":
                raise ValueError(
                    "objective.kind=motionbert lifts with a backbone of pretrain.backbones: set "
                    "model.backbone=dstformer (MotionBERT's network)"
                )
            if backbones.MODULES[m.backbone][1].protocol != "seq2seq":
                raise ValueError(
                    f"objective.kind=motionbert scores every frame of a window; the {m.backbone} backbone predicts one "
                    "frame per window: set model.backbone=dstformer"
                )
        if m.backbone != "mpm" and self.preset in PRESETS:
            base = model_preset(self.preset)
            changed = [k for k in MPM_SIZES if getattr(m, k) != getattr(base, k)]
            if changed:
                raise ValueError(
                    f"model.{changed[0]} is a size of MPM's network; the {m.backbone} backbone's sizes are model.size "
                    f"and model.arguments (e.g. --set 'model.arguments={{{changed[0]}: ...}}')"
                )

    @classmethod
    def defaults(cls, preset: str = "mpm") -> Config:
        """The defaults, model sizes from ``preset`` (:data:`pretrain.model.PRESETS`; KeyError if unknown)."""
        return cls(preset=preset, model=_section(model_preset(preset)))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def clip_len(self) -> int:
        return self.data.clip_len or self.model.frames


SHIPPED = Path(__file__).resolve().parent / "configs"  # configs installed with the package (``--config demo``)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Config from an optional file (a path, or a shipped config's name) plus ``KEY=VALUE`` overrides."""
    return settings.load(Config, settings.config_path(path, SHIPPED) if path else None, overrides)
