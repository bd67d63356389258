"""Pretraining: the shard stream and one of two objectives (``objective.kind``): MPM's network and its masked
2D / 3D objective (``mpm``, :mod:`pretrain.objective`), or a backbone of :mod:`pretrain.backbones` (DSTformer)
and MotionBERT's lifting of noised, masked 2D (``motionbert``, :mod:`pretrain.motionbert`); run by the one
training loop (:mod:`training.loop`), then the export.

Outputs in ``train.out``: ``checkpoints/`` (DeepSpeed, every ``checkpoint_every`` steps and at the end;
client state ``{"config", "step", "data"}``), ``metrics.jsonl`` (step, loss, the objective's parts: MPM's
loss_2d, loss_3d[, loss_lift][, loss_reproject, loss_bone], MotionBERT's loss_3d_pos, loss_3d_scale,
loss_3d_velocity, loss_2d_proj; lr, samples_per_s, seconds, epoch, and ``data_checksum``: the sum of the
logged step's 2D batch on each rank, which shows that ranks read different data and that a resumed run
reads what the first one did),
``loss_curve.png``, ``pretrained.pt`` (fp32 export, :mod:`pretrain.export`) and ``config.json`` (the
resolved run config).

Reproducibility: masks and dropout of step s on rank r come from seeds derived from (seed, s, r), and the
data stream position is checkpointed, so a resumed run continues with the same data and the same random
draws as the uninterrupted one (same world size and loader workers).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ingest.atomic import write_json
from pretrain.config import Config
from pretrain.export import save_backbone_export, save_export
from pretrain.model import MPM
from pretrain.motionbert import PARTS as MOTIONBERT_PARTS
from pretrain.motionbert import motionbert_loss
from pretrain.objective import pretrain_loss
from shards.stream import LoaderOptions, make_loader
from training import loop
from training.engine import autocast, compute_dtype, make_optimizer, make_scheduler, step_seed
from training.runlog import plot_curves


def build_loader(cfg: Config, steps_per_epoch: int | None = None):
    """The resampled training stream of ``cfg.data`` (``shards.stream.make_loader``)."""
    d = cfg.data
    if not d.shards:
        raise ValueError("data.shards is not set: give the shard folder (--shards or --set data.shards=...)")
    return make_loader(
        d.shards,
        LoaderOptions(
            mixture=None if d.datasets else d.mixture,
            mixtures_file=d.mixtures_file,
            datasets=d.datasets,
            split="train",
            clip_len=cfg.clip_len,
            stride=d.stride,
            joints=cfg.model.joints,
            batch_size=d.batch_size,
            num_workers=d.num_workers,
            seed=cfg.train.seed,
            epoch=0,
            steps_per_epoch=steps_per_epoch or d.steps_per_epoch,
            flip=d.flip,
            resampled=True,
            shuffle_segments=d.shuffle_segments,
            max_corrupt=d.max_corrupt,
        ),
    )


def check(cfg: Config, *, resume: bool = False, overwrite: bool = False) -> None:
    """What the run will need, checked before it starts (the command line calls it under
    :func:`ingest.cli.user_errors`): the clip length against ``model.frames``, the shard folder, the mixture
    and the clip length the shards were built with (by building the loader), and the run folder
    (:func:`training.loop.check_out`).

    Raises:
        ValueError / FileNotFoundError: naming the key, folder or file.
    """
    _check_clip_len(cfg)
    build_loader(cfg)
    loop.check_out(cfg.train.out, resume=resume, overwrite=overwrite)


def _check_clip_len(cfg: Config) -> None:
    if cfg.clip_len > cfg.model.frames:
        raise ValueError(f"data.clip_len={cfg.clip_len} exceeds model.frames={cfg.model.frames}")


def _gather(value: torch.Tensor) -> list[float]:
    """One scalar per rank."""
    out = [torch.zeros_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(out, value)
    return [v.item() for v in out]


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or, with ``resume``, continue from ``out/checkpoints``) a pretraining run.

    Returns a summary: ``steps``, ``last`` (the last metrics record), ``windows`` (one pass of the
    selection), and the paths ``out``, ``checkpoints``, ``metrics``, ``curve``, ``export``.

    Raises:
        ValueError: inconsistent config (clip length above ``model.frames``, no shards), or errors from
            the loader naming the shard folder.
    """
    _check_clip_len(cfg)
    rank, _ = loop.start(cfg.train.out, seed=cfg.train.seed, threads=cfg.train.threads)
    out = Path(cfg.train.out)
    if rank == 0:
        write_json(out / "config.json", cfg.to_dict(), indent=2)
    mpm = cfg.objective.kind == "mpm"
    model = MPM(cfg.model.network()) if mpm else cfg.model.backbone_network()
    optimizer = make_optimizer(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.betas)
    scheduler = make_scheduler(optimizer, cfg.train.warmup_steps, cfg.train.steps, cfg.train.min_lr_ratio)
    engine = loop.engine_for(
        model,
        optimizer,
        scheduler,
        out=out,
        deepspeed_config=cfg.train.deepspeed_config,
        micro_batch=cfg.data.batch_size,
        grad_accum=cfg.train.grad_accum,
        grad_clip=cfg.train.grad_clip,
    )
    loader = build_loader(cfg)
    dtype, device, gen, accum = compute_dtype(engine), engine.device, torch.Generator(), cfg.train.grad_accum

    def step(engine, batch: dict, done: int, micro: int):
        seed = step_seed(cfg.train.seed, done * accum + micro % accum, rank)
        torch.manual_seed(seed)
        gen.manual_seed(seed)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        with autocast(engine):  # the lifting term's own pass (engine.lift) bypasses engine.forward
            if not mpm:
                return motionbert_loss(engine, batch, cfg.motionbert, gen, dtype, step=done)
            return pretrain_loss(engine, batch, cfg.mask, cfg.objective, gen, dtype)

    finished = loop.run(
        engine,
        loader,
        step,
        out=out,
        total=cfg.train.steps,
        client_state={"config": cfg.to_dict()},
        resume=resume,
        stop_after=cfg.train.stop_after,
        log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every,
        record=lambda batch: {"data_checksum": _gather(batch["pose2d"].to(device).double().sum())},
        desc="pretrain",
        progress=progress,
    )
    summary = {
        "steps": finished.steps,
        "last": finished.last,
        "windows": loader.windows,
        "corrupt_shards": loader.corrupt_per_dataset,
        "out": str(out),
        "checkpoints": str(out / "checkpoints"),
        "metrics": str(out / "metrics.jsonl"),
        "curve": str(out / "loss_curve.png"),
        "export": str(out / "pretrained.pt"),
    }
    if rank == 0:
        if mpm:
            save_export(out / "pretrained.pt", cfg.model.network(), finished.state)
        else:
            save_backbone_export(out / "pretrained.pt", cfg.model.backbone, model.arguments, finished.state)
        if (out / "metrics.jsonl").stat().st_size:
            plot_curves(
                out / "metrics.jsonl",
                out / "loss_curve.png",
                **({} if mpm else {"keys": ("loss", *MOTIONBERT_PARTS)}),
                title=f"{'MPM' if mpm else 'MotionBERT'} pretraining ({cfg.model.backbone}): "
                f"{cfg.data.datasets or cfg.data.mixture} ({out})",
            )
    dist.barrier()
    return summary
