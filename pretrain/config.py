"""The pretraining run configuration, read and overridden by the one mechanism of both stages
(:mod:`training.settings`). A file has up to five sections plus ``preset``::

    preset: mpm            # model sizes start from pretrain.model.PRESETS[preset]
    model: {joints: 16}    # then these fields override them
    mask: {mode: spatiotemporal, joints_masked: 5, frame_ratio: 0.6}
    objective: {lambda_2d: 2.0, lambda_3d: 3.0}
    data: {shards: /data/shards, mixture: base, batch_size: 16}
    train: {steps: 1000, lr: 1.0e-3, out: runs/base}

Overrides are ``section.field=value`` strings (``--set train.lr=1e-4``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from pretrain.masking import MaskConfig
from pretrain.model import ModelConfig
from pretrain.model import preset as model_preset
from pretrain.objective import ObjectiveConfig
from training import settings


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


@dataclass
class Config:
    """A whole pretraining run. ``model.joints`` also selects the loader's joint set (16 or 17)."""

    preset: str = "mpm"
    model: ModelConfig = field(default_factory=lambda: model_preset("mpm"))
    mask: MaskConfig = field(default_factory=MaskConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def defaults(cls, preset: str = "mpm") -> Config:
        """The defaults, model sizes from ``preset`` (:data:`pretrain.model.PRESETS`; KeyError if unknown)."""
        return cls(preset=preset, model=model_preset(preset))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def clip_len(self) -> int:
        return self.data.clip_len or self.model.frames


SHIPPED = Path(__file__).resolve().parent / "configs"  # configs installed with the package (``--config demo``)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Config from an optional file (a path, or a shipped config's name) plus ``KEY=VALUE`` overrides."""
    return settings.load(Config, settings.config_path(path, SHIPPED) if path else None, overrides)
