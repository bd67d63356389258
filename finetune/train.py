"""Finetuning loop: the lifter on Human3.6M's train split, streamed from the shards, on a DeepSpeed engine.

MPM stage II (released ``trainer.py`` / ``trainutils/finetune_epoch.py``): Adam with AMSGrad, learning rate
7e-4 decayed by 0.97 after every epoch, loss ``lambda_ft * MPJPE(centre) + lambda_seq * MPJPE(sequence)``,
horizontal-flip augmentation of the training windows; optionally occluded inputs (``occlusion_prob``:
joints hidden by the pretrained mask token, for the incomplete-2D lifting of MPM's table 4).
The DeepSpeed plumbing (process group, engine, configs in ``pretrain/configs/``, checkpoints, fp32
weights) and the metrics log are pretraining's (:mod:`pretrain.engine`, :mod:`pretrain.metrics`), so one
process or many (``deepspeed --module finetune``) work alike.

Outputs in ``out``: ``checkpoints/`` (DeepSpeed; client state ``{"config", "step", "data"}``, saved at the
end of every epoch and of the run), ``metrics.jsonl``, ``lifter.pt`` (:mod:`finetune.checkpoint`) and,
evaluated on the store's test split by rank 0, ``results.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from finetune.checkpoint import save_lifter
from finetune.completion import training_occlusions
from finetune.evaluate import evaluate_h36m, format_h36m_table, write_json
from finetune.model import PRETRAINED_PREFIXES, Lifter, lifting_loss
from ingest.store import MotionStore
from pretrain.engine import (
    build_engine,
    compute_dtype,
    default_ds_config,
    ensure_distributed,
    fp32_state_dict,
    load_checkpoint,
    load_ds_config,
    save_checkpoint,
    tag_for,
)
from pretrain.export import load_pretrained
from pretrain.metrics import MetricsLog
from pretrain.model import preset
from shards.stream import make_loader


@dataclass
class FinetuneConfig:
    """Finetuning options (``python -m finetune --help`` documents each)."""

    store: str
    shards: str
    out: str
    init: str | None = None
    frames: int | None = None
    preset: str = "mpm"
    joints: int = 17
    subjects: list[str] | None = None
    batch_size: int = 256
    lr: float = 7e-4
    lr_decay: float = 0.97
    pretrained_lr_scale: float = 1.0
    epochs: int = 20
    steps_per_epoch: int | None = None
    max_steps: int | None = None
    stride: int = 1
    lambda_ft: float = 1.0
    lambda_seq: float = 1.0
    freeze_shared: bool = False
    flip: bool = True
    occlusion_prob: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    num_workers: int = 0
    threads: int | None = None
    log_every: int = 50
    deepspeed_config: str | None = None
    eval_flip: bool = False
    eval_subjects: list[str] | None = None
    eval_cameras: list[str] | None = None
    evaluate: bool = True

    def __post_init__(self) -> None:
        for key in ("batch_size", "epochs", "stride", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.pretrained_lr_scale <= 1.0:
            raise ValueError(f"pretrained_lr_scale must be in (0, 1], got {self.pretrained_lr_scale}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0.0 <= self.occlusion_prob <= 1.0:
            raise ValueError(f"occlusion_prob must be in [0, 1], got {self.occlusion_prob}")


class EpochDecay:
    """``LambdaLR`` factor ``decay ** (step // steps_per_epoch)``: MPM's per-epoch decay, stepped by
    DeepSpeed after every optimizer step (picklable, so it round-trips through checkpoints)."""

    def __init__(self, steps_per_epoch: int, decay: float):
        self.steps_per_epoch, self.decay = steps_per_epoch, decay

    def __call__(self, step: int) -> float:
        return self.decay ** (step // self.steps_per_epoch)


def param_groups(lifter: Lifter, lr: float, pretrained_scale: float = 1.0) -> list[dict]:
    """Optimizer groups: the trainable parameters that pretraining provides (``encoder_2d``, ``shared``,
    ``mask_token_2d``: :data:`finetune.model.PRETRAINED_PREFIXES`) at ``lr * pretrained_scale``, the new
    ones (strided transformer, heads) at ``lr`` (a lower rate for pretrained layers is standard finetuning
    practice, e.g. layer-wise decay in BEiT / MAE). Each group is named (``"pretrained"``, ``"new"``)."""
    groups = {"pretrained": [], "new": []}
    for name, p in lifter.named_parameters():
        if p.requires_grad:
            groups["pretrained" if name.startswith(PRETRAINED_PREFIXES) else "new"].append(p)
    scales = {"pretrained": pretrained_scale, "new": 1.0}
    return [{"name": k, "params": v, "lr": lr * scales[k]} for k, v in groups.items() if v]


def build_lifter(cfg: FinetuneConfig) -> tuple[Lifter, dict]:
    """The lifter, with pretrained encoder and shared weights when ``cfg.init`` is given (its sizes then
    come from the checkpoint, :func:`pretrain.export.load_pretrained`), else randomly initialised from
    ``cfg.preset`` (the from-scratch baseline). Returns (lifter, {"init", "loaded": tensors copied})."""
    if cfg.init:
        mpm = load_pretrained(cfg.init)
        lifter = Lifter(mpm.cfg, frames=cfg.frames)
        loaded = len(lifter.load_pretrained(mpm.state_dict()))
    else:
        overrides = {"joints": cfg.joints} | ({"frames": cfg.frames} if cfg.frames else {})
        lifter, loaded = Lifter(preset(cfg.preset, **overrides), frames=cfg.frames), 0
    if cfg.freeze_shared:
        lifter.freeze("shared")
    return lifter, {"init": cfg.init, "loaded": loaded}


def train(cfg: FinetuneConfig, resume: bool = False) -> dict:
    """Finetune (or, with ``resume``, continue from ``out/checkpoints``), export ``lifter.pt`` and, on rank
    0, evaluate. Returns a summary: the config, ``init``, ``loaded``, ``steps``, ``train_seconds`` and,
    when evaluated, ``results``.

    Raises:
        ValueError / FileNotFoundError: bad options, no Human3.6M train window in the shards, unusable
            pretrained checkpoint (each naming the path).
    """
    rank, world = ensure_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    lifter, init_meta = build_lifter(cfg)
    labelled = {"h36m": {"subjects": cfg.subjects}} if cfg.subjects else None
    loader = make_loader(cfg.shards, mixture=labelled, datasets=None if labelled else ["h36m"], split="train",
                         clip_len=lifter.frames,
                         stride=cfg.stride, joints=lifter.cfg.joints, batch_size=cfg.batch_size,
                         num_workers=cfg.num_workers, seed=cfg.seed, steps_per_epoch=cfg.steps_per_epoch,
                         flip=cfg.flip, resampled=False)
    optimizer = torch.optim.Adam(param_groups(lifter, cfg.lr, cfg.pretrained_lr_scale if cfg.init else 1.0),
                                 amsgrad=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, EpochDecay(len(loader), cfg.lr_decay))
    ds_config = load_ds_config(cfg.deepspeed_config or default_ds_config(), micro_batch=cfg.batch_size,
                               grad_accum=1, grad_clip=cfg.grad_clip, world_size=world)
    engine = build_engine(lifter, optimizer, scheduler, ds_config)
    client = load_checkpoint(engine, ckpt_dir) if resume else None
    if client is not None:
        loader.load_state_dict(client["data"])
    step = engine.global_steps
    log = MetricsLog(out / "metrics.jsonl", enabled=rank == 0, resume_step=step if resume else None)
    dtype, device = compute_dtype(engine), engine.device
    end = cfg.epochs * len(loader) if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * len(loader))
    client_state = {"config": {**asdict(cfg), "model": asdict(lifter.cfg)}}
    t0 = time.perf_counter()
    saved_at = step if client is not None else -1
    engine.train()
    while step < end:
        for batch in loader:
            x = batch["pose2d"].to(device, dtype)
            y = batch["pose3d"].to(device, dtype)
            valid = (batch["valid2d"] & batch["valid3d"]).to(device)
            hidden = None
            if cfg.occlusion_prob > 0:  # the same draws on a resumed run: seeded by (seed, step, rank)
                rng = np.random.default_rng([cfg.seed, step, rank])
                hidden = torch.from_numpy(training_occlusions(len(x), lifter.joint_set, cfg.occlusion_prob, rng))
                hidden = hidden.to(device)
            centre, seq = engine(x, hidden)
            loss, parts = lifting_loss(centre.float(), seq.float(), y.float(), valid, cfg.lambda_ft,
                                       cfg.lambda_seq)
            engine.backward(loss)
            engine.step()
            step = engine.global_steps
            if step % cfg.log_every == 0 or step == 1 or step == end:
                means = torch.tensor(list(parts.values()), dtype=torch.float64, device=device)
                if world > 1:  # every rank reaches this step: the logged losses are means over ranks
                    dist.all_reduce(means)
                    means /= world
                log.write({"step": step, "epoch": loader.epoch, "lr": engine.get_lr()[0],
                           **dict(zip(parts, means.tolist(), strict=True)),
                           "seconds": round(time.perf_counter() - t0, 3)})
            if step >= end:
                break
        save_checkpoint(engine, ckpt_dir, step, {**client_state, "step": step, "data": loader.state_dict()})
        saved_at = step
    if saved_at != step:  # nothing trained: the export still comes from a checkpoint
        save_checkpoint(engine, ckpt_dir, step, {**client_state, "step": step, "data": loader.state_dict()})
    state = fp32_state_dict(engine, ckpt_dir, tag_for(step))
    summary = {"config": asdict(cfg), **init_meta, "steps": step,
               "train_seconds": round(time.perf_counter() - t0, 1)}
    if rank == 0:
        export = Lifter(lifter.cfg, frames=lifter.frames, strides=lifter.strides)
        export.load_state_dict(state)
        export.eval()
        save_lifter(out / "lifter.pt", export, meta=summary)
        if cfg.evaluate:
            summary["results"] = _evaluate(cfg, export.to(device), out, summary)
    dist.barrier()
    return summary


def _evaluate(cfg: FinetuneConfig, lifter: Lifter, out: Path, summary: dict) -> dict:
    """Human3.6M test protocols of the exported lifter; writes results.json and prints the table."""
    store = MotionStore.open(cfg.store)
    result = evaluate_h36m(lifter.predict_centre, store["h36m"], lifter.frames, lifter.joint_set,
                           flip=cfg.eval_flip, subjects=cfg.eval_subjects, cameras=cfg.eval_cameras,
                           device=str(next(lifter.parameters()).device))
    write_json(out / "results.json", {"checkpoint": str(out / "lifter.pt"), "train": summary, "unit": "mm",
                                      "frames": lifter.frames, "flip": cfg.eval_flip, "h36m": result})
    print(format_h36m_table(result, title=f"Human3.6M test, {summary['steps']} finetuning steps, init "
                            f"{cfg.init or 'random (from scratch)'}"))
    return result
