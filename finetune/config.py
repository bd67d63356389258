"""The finetuning run configuration, read and overridden by the one mechanism of both stages
(:mod:`training.settings`: a JSON / YAML file, shortcut flags, ``--set section.field=value``)::

    model: {init: runs/large/pretrained.pt, frames: 27}
    data: {shards: /data/shards, subjects: [S1], batch_size: 128}
    train: {out: runs/finetune, max_steps: 800, lr: 2.0e-3}
    eval: {store: /data/store, subjects: [S11], flip: false}

``eval`` is :class:`finetune.evaluate.EvalConfig`, the options of ``python -m finetune.evaluate``: the
evaluation finetuning runs at its end is that command's, with the same names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from finetune.evaluate import EvalConfig
from finetune.model import CENTRE_HEADS
from pretrain import backbones
from pretrain.model import ModelConfig, preset
from training import settings

SHIPPED = Path(__file__).resolve().parent / "configs"  # configs installed with the package (``--config demo``)


@dataclass
class ModelSection:
    """The lifter. ``init``: a pretraining export or checkpoint folder whose weights start the lifter (MPM's:
    its encoder and shared layers; another backbone's: all of it; its sizes then come from it); None: random
    weights of ``preset`` with ``joints`` (the from-scratch baseline), its sizes overridden by any of
    :data:`NETWORK_FIELDS` given here (``channels``, ``dropout``, ...: :class:`pretrain.model.ModelConfig`, as a
    pretraining config's ``model`` section overrides its preset; the data-scaling ablation gives its baseline the
    pretrained networks' sizes so). ``frames``:
    the window length T (default: the pretrained model's, or the preset's). ``freeze_shared``: keep the shared
    layers fixed (a frozen-feature probe). ``centre_head``: the centre-frame predictor, ``strided`` (MPM's
    released strided transformer) or ``decoder`` (the centre frame of the pretrained 3D decoder's output;
    :mod:`finetune.model`).

    ``backbone``: ``mpm`` (the above), or another lifter of :mod:`pretrain.backbones` (``videopose3d``,
    ``simplebaseline``, ``poseformer``, ``dstformer``) at its released ``size`` (``full``; ``lite`` for
    dstformer) with ``joints`` and ``frames`` (default the size's: VideoPose3D 243, PoseFormer 81, DSTformer 243,
    SimpleBaseline 1) (:class:`finetune.backbone_lifter.BackboneLifter`); of the network fields, ``channels``,
    ``layers``, ``heads`` and ``dropout`` override the backbone's constructor arguments of those names where it
    takes them (its docstring; e.g. a small test network). It starts from scratch, or with ``init`` from a
    pretraining export of the same backbone (``objective.kind: motionbert``; every backbone weight, its sizes,
    joints and frames then come from the export: ``size`` is ignored, and ``frames``, when given, must equal the
    export's). It is evaluated by its own protocol unless ``eval.protocol`` says otherwise.

    ``refine``: MPM's refine stage (:mod:`finetune.refine`): a finetuned ``lifter.pt`` (or the run folder holding
    it) to start from, its backbone and sizes those of the file (``backbone`` must name the same one); a refine
    head (``refine_hidden`` wide, dropout ``refine_dropout``: the reference's 1024 and 0.5) is attached unless
    the file has one, and the lifter and the head train together on the refined centre frame's MPJPE (the
    released command's rate is ``train.lr`` 1e-4).

    Raises:
        ValueError: an unknown ``centre_head`` or ``backbone``; a network field given with ``init`` (the
            checkpoint's sizes); for another backbone: ``freeze_shared``, ``size`` with MPM, and network fields
            it does not take; ``refine`` with ``init`` or network fields (the file's sizes); ``refine_hidden``
            below 1, ``refine_dropout`` outside [0, 1). An ``init`` of another network is refused when the lifter
            is built (:func:`finetune.train.build_lifter`).
    """

    init: str | None = None
    backbone: str = "mpm"
    size: str = "full"
    preset: str = "mpm"
    frames: int | None = None
    joints: int = 17
    freeze_shared: bool = False
    centre_head: str = "strided"
    channels: int | None = None
    hidden: int | None = None
    layers: int | None = None
    heads: int | None = None
    decoder_layers: int | None = None
    dropout: float | None = None
    attn_dropout: float | None = None
    refine: str | None = None
    refine_hidden: int = 1024
    refine_dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.centre_head not in CENTRE_HEADS:
            raise ValueError(f"model.centre_head must be one of {CENTRE_HEADS}, got {self.centre_head!r}")
        settings.at_least("model", self, 1, "refine_hidden")
        if not 0.0 <= self.refine_dropout < 1.0:
            raise ValueError(f"model.refine_dropout must be in [0, 1), got {self.refine_dropout}")
        given = [k for k in NETWORK_FIELDS if getattr(self, k) is not None]
        if self.refine and (self.init or given):
            key = "init" if self.init else given[0]
            raise ValueError(
                f"model.{key}: a refine stage starts from the finetuned lifter model.refine={self.refine}, "
                "with that file's weights and sizes"
            )
        if self.init and given:
            raise ValueError(
                f"model.{given[0]}: a network started from model.init={self.init} has that checkpoint's sizes"
            )
        if self.backbone not in ("mpm", *backbones.NAMES):
            raise ValueError(f"model.backbone must be one of {['mpm', *backbones.NAMES]}, got {self.backbone!r}")
        if self.backbone == "mpm":
            if self.size != "full":
                raise ValueError("model.size is another backbone's released size; MPM's sizes are model.preset")
            return
        if self.freeze_shared:
            raise ValueError(f"model.freeze_shared: the {self.backbone} backbone has no pretrained shared layers")
        if self.size not in backbones.sizes(self.backbone):
            raise ValueError(
                f"model.size: {self.backbone} has sizes {backbones.sizes(self.backbone)}, not {self.size!r}"
            )
        foreign = [k for k in NETWORK_FIELDS if getattr(self, k) is not None]
        foreign = [k for k in foreign if k not in backbones.argument_names(self.backbone)]
        if foreign:
            raise ValueError(f"model.{foreign[0]} does not apply to the {self.backbone} backbone")

    def backbone_network(self) -> backbones.Backbone:
        """The non-MPM ``backbone`` at ``size`` with ``joints``, ``frames`` and the given network fields, randomly
        initialised (ValueError for sizes it cannot take, e.g. VideoPose3D frames that are no power of 3)."""
        fields = {k: getattr(self, k) for k in NETWORK_FIELDS if getattr(self, k) is not None}
        try:
            return backbones.build(self.backbone, self.size, joints=self.joints, frames=self.frames, **fields)
        except ValueError as exc:
            raise ValueError(f"model ({self.backbone}): {exc}") from None

    def network(self) -> ModelConfig:
        """The from-scratch network's sizes: ``preset`` with ``joints``, ``frames`` (when given) and the given
        :data:`NETWORK_FIELDS` (ValueError for an invalid combination, from :class:`ModelConfig`)."""
        fields = {k: getattr(self, k) for k in NETWORK_FIELDS if getattr(self, k) is not None}
        return preset(self.preset, joints=self.joints, **fields, **({"frames": self.frames} if self.frames else {}))


# the network sizes a from-scratch lifter may take besides its preset (pretrain.model.ModelConfig's fields)
NETWORK_FIELDS = ("channels", "hidden", "layers", "heads", "decoder_layers", "dropout", "attn_dropout")


@dataclass
class DataSection:
    """Human3.6M's train split from the shards (:func:`shards.stream.make_loader`, each window once per
    epoch). ``subjects``: the labelled subjects (default every train subject; S1 for the semi-supervised
    protocol); ``batch_size`` windows per rank; window ``stride``; horizontal ``flip`` augmentation;
    ``occlusion_prob``: the share of windows with an occluded joint pattern (2D completion, MPM table 4);
    loader ``num_workers``; ``steps_per_epoch`` (default: one pass); ``shuffle_segments``: decoded segments
    (1024 frames each, about 0.4 MB) open in the window shuffle buffer. A shard holds consecutive segments
    of a few dozen sequences, so a small buffer fills every batch from a handful of takes for hundreds of
    steps; the default holds all of S1's segments (a few hundred) and most of S1, S5-S8's (1,740).
    ``max_corrupt``: the fraction of the shards that may be skipped as corrupt before the run stops
    (``shards.stream.LoaderOptions.max_corrupt``)."""

    shards: str = ""
    subjects: list[str] | None = None
    batch_size: int = 256
    stride: int = 1
    flip: bool = True
    occlusion_prob: float = 0.0
    num_workers: int = 0
    steps_per_epoch: int | None = None
    shuffle_segments: int = 1024
    max_corrupt: float = 0.05

    def __post_init__(self) -> None:
        settings.at_least("data", self, 1, "batch_size", "stride", "shuffle_segments", "steps_per_epoch")
        settings.at_least("data", self, 0, "num_workers")
        for key in ("occlusion_prob", "max_corrupt"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"data.{key} must be in [0, 1], got {getattr(self, key)}")


@dataclass
class TrainSection:
    """MPM stage II (released ``trainer.py``): Adam with AMSGrad at ``lr``, times ``lr_decay`` after every
    epoch (every ``decay_every`` optimizer steps when set: a schedule for a fixed step budget that leaves the
    loader's epoch a whole pass of the windows), the pretrained layers at ``lr * pretrained_lr_scale``; loss
    ``lambda_ft * MPJPE(centre) + lambda_seq * MPJPE(sequence)``; ``epochs`` (``max_steps`` caps the total);
    ``grad_clip`` (0: none, as MPM), ``grad_accum`` micro batches per step; ``out`` the run folder; metrics at
    the first step, every ``log_every`` steps and the last; checkpoints at every epoch's end
    (``checkpoint_every`` steps instead when set); ``threads`` torch CPU threads per rank (0: torch's default);
    ``deepspeed_config`` as in pretraining: a DeepSpeed JSON file or a shipped one's name (``cpu_bf16``: bf16
    autocast on a CPU with native bf16, :mod:`training.engine`)."""

    out: str = "runs/finetune"
    epochs: int = 20
    max_steps: int | None = None
    lr: float = 7e-4
    lr_decay: float = 0.97
    decay_every: int | None = None
    pretrained_lr_scale: float = 1.0
    lambda_ft: float = 1.0
    lambda_seq: float = 1.0
    grad_clip: float = 0.0
    grad_accum: int = 1
    seed: int = 0
    threads: int = 0
    log_every: int = 50
    checkpoint_every: int | None = None
    deepspeed_config: str | None = None

    def __post_init__(self) -> None:
        settings.at_least(
            "train", self, 1, "epochs", "max_steps", "log_every", "grad_accum", "checkpoint_every", "decay_every"
        )
        settings.at_least("train", self, 0, "grad_clip", "threads")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if not 0.0 < self.pretrained_lr_scale <= 1.0:
            raise ValueError(f"train.pretrained_lr_scale must be in (0, 1], got {self.pretrained_lr_scale}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")


@dataclass
class FinetuneConfig:
    """A whole finetuning run; ``evaluate``: run the Human3.6M protocols of ``eval`` at the end (rank 0).
    Occluded-joint training (``data.occlusion_prob``) and completion evaluation (``eval.completion``) need MPM's
    lifter (ValueError for another ``model.backbone``)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalConfig = field(default_factory=EvalConfig)
    evaluate: bool = True

    def __post_init__(self) -> None:
        if self.model.backbone != "mpm" and (self.data.occlusion_prob > 0 or self.eval.completion):
            key = "data.occlusion_prob" if self.data.occlusion_prob > 0 else "eval.completion"
            raise ValueError(
                f"{key}: occluded joints enter as MPM's mask token, which the {self.model.backbone} backbone "
                "does not have (model.backbone=mpm)"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> FinetuneConfig:
    """Config from an optional file (a path, or a shipped config's name) plus ``KEY=VALUE`` overrides."""
    return settings.load(FinetuneConfig, settings.config_path(path, SHIPPED) if path else None, overrides)
