"""The pretraining loop: the shard stream into a DeepSpeed engine, with checkpoints, metrics and export.

Outputs in ``train.out_dir``: ``checkpoints/`` (DeepSpeed, every ``checkpoint_every`` steps and at the
end; client state ``{"config", "step", "data"}``), ``metrics.jsonl`` (step, loss, loss_2d, loss_3d, lr,
samples_per_s, epoch, and ``data_checksum``: the sum of the logged step's 2D batch on each rank, which
shows that ranks read different data and that a resumed run reads what the first one did),
``loss_curve.png``, ``pretrained.pt`` (fp32 export, :mod:`pretrain.export`) and
``config.json`` (the resolved run config).

Reproducibility: masks and dropout of step s on rank r come from seeds derived from (seed, s, r), and the
data stream position is checkpointed, so a resumed run continues with the same data and the same random
draws as the uninterrupted one (same world size and loader workers).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from pretrain.config import Config
from pretrain.engine import (
    build_engine,
    compute_dtype,
    default_ds_config,
    ensure_distributed,
    fp32_state_dict,
    load_checkpoint,
    load_ds_config,
    make_optimizer,
    make_scheduler,
    save_checkpoint,
    step_seed,
    tag_for,
)
from pretrain.export import save_export
from pretrain.metrics import MetricsLog, plot_curves
from pretrain.model import MPM
from pretrain.objective import pretrain_loss
from shards.stream import make_loader


def build_loader(cfg: Config, steps_per_epoch: int | None = None):
    """The resampled training stream of ``cfg.data`` (``shards.stream.make_loader``)."""
    d = cfg.data
    if not d.shards:
        raise ValueError("data.shards is not set: give the shard folder (--shards or --set data.shards=...)")
    return make_loader(d.shards, mixture=None if d.datasets else d.mixture, datasets=d.datasets, split="train",
                       clip_len=cfg.clip_len, stride=d.stride, joints=cfg.model.joints, batch_size=d.batch_size,
                       num_workers=d.num_workers, seed=cfg.train.seed, epoch=0,
                       steps_per_epoch=steps_per_epoch or d.steps_per_epoch, flip=d.flip, resampled=True)


def _gather(value: torch.Tensor) -> list[float]:
    """One scalar per rank."""
    out = [torch.zeros_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(out, value)
    return [v.item() for v in out]


def _mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    if dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or, with ``resume``, continue from ``out_dir/checkpoints``) a pretraining run.

    Returns a summary: ``steps``, ``last`` (the last metrics record), ``windows`` (one pass of the
    selection), and the paths ``out_dir``, ``checkpoints``, ``metrics``, ``curve``, ``export``.

    Raises:
        ValueError: inconsistent config (clip length above ``model.frames``, no shards), or errors from
            the loader naming the shard folder.
    """
    if cfg.clip_len > cfg.model.frames:
        raise ValueError(f"data.clip_len={cfg.clip_len} exceeds model.frames={cfg.model.frames}")
    rank, world = ensure_distributed()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    out = Path(cfg.train.out_dir)
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", cfg.to_dict())

    torch.manual_seed(cfg.train.seed)
    model = MPM(cfg.model)
    optimizer = make_optimizer(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.betas)
    scheduler = make_scheduler(optimizer, cfg.train.warmup_steps, cfg.train.steps, cfg.train.min_lr_ratio)
    ds_config = load_ds_config(cfg.train.deepspeed or default_ds_config(), micro_batch=cfg.data.batch_size,
                               grad_accum=cfg.train.grad_accum, grad_clip=cfg.train.grad_clip, world_size=world)
    engine = build_engine(model, optimizer, scheduler, ds_config)
    loader = build_loader(cfg)

    client = load_checkpoint(engine, ckpt_dir) if resume else None
    if client is not None:
        loader.load_state_dict(client["data"])
    step = engine.global_steps
    log = MetricsLog(out / "metrics.jsonl", enabled=rank == 0, resume_step=step if resume else None)

    dtype, device = compute_dtype(engine), engine.device
    gen = torch.Generator()
    accum = cfg.train.grad_accum
    names = ["loss", "loss_2d", "loss_3d"] + (["loss_lift"] if cfg.objective.lambda_lift > 0 else [])
    sums = torch.zeros(len(names), dtype=torch.float64, device=device)
    count, samples, t_log = 0, 0, time.perf_counter()
    last: dict = {}
    saved_at = step if client is not None else -1
    end = cfg.train.steps if cfg.train.stop_after is None else min(cfg.train.steps, step + cfg.train.stop_after)
    bar = tqdm(total=cfg.train.steps, initial=step, disable=rank != 0 or not progress, desc="pretrain", unit="step")
    micro = 0
    engine.train()
    while step < end:
        epoch_start = micro
        for batch in loader:
            seed = step_seed(cfg.train.seed, step * accum + micro % accum, rank)
            torch.manual_seed(seed)
            gen.manual_seed(seed)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
            loss, parts = pretrain_loss(engine, batch, cfg.mask, cfg.objective, gen, dtype)
            engine.backward(loss)
            engine.step()
            micro += 1
            sums += torch.stack([loss.detach(), *(parts[k] for k in names[1:])]).double()
            count += 1
            samples += batch["pose3d"].shape[0] * world
            if engine.global_steps == step:
                continue
            step = engine.global_steps
            bar.update(1)
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                means = _mean_across_ranks(sums / count).cpu()
                now = time.perf_counter()
                last = {"step": step, **dict(zip(names, means.tolist(), strict=True)), "lr": engine.get_lr()[0],
                        "samples_per_s": samples / (now - t_log), "epoch": loader.epoch,
                        "data_checksum": _gather(batch["pose2d"].double().sum())}
                log.write(last)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                sums.zero_()
                count, samples, t_log = 0, 0, now
            if step % cfg.train.checkpoint_every == 0 or step == end:
                save_checkpoint(engine, ckpt_dir, step, {"config": cfg.to_dict(), "step": step,
                                                          "data": loader.state_dict()})
                saved_at = step
            if step >= end:
                break
        if micro == epoch_start:
            raise RuntimeError(f"{cfg.data.shards}: the stream yielded no batch in epoch {loader.epoch - 1} "
                               f"({loader.corrupt_shards} corrupt shard reads)")
    bar.close()
    if saved_at != step:  # nothing trained (steps 0): the export still comes from a checkpoint
        save_checkpoint(engine, ckpt_dir, step, {"config": cfg.to_dict(), "step": step, "data": loader.state_dict()})
    summary = {"steps": step, "last": last, "windows": loader.windows, "out_dir": str(out),
               "checkpoints": str(ckpt_dir), "metrics": str(out / "metrics.jsonl"),
               "curve": str(out / "loss_curve.png"), "export": str(out / "pretrained.pt")}
    dist.barrier()  # every rank's checkpoint files are complete
    if rank == 0:
        save_export(out / "pretrained.pt", cfg.model, fp32_state_dict(engine, ckpt_dir, tag_for(step)))
        if (out / "metrics.jsonl").stat().st_size:
            plot_curves(out / "metrics.jsonl", out / "loss_curve.png",
                        title=f"MPM pretraining: {cfg.data.datasets or cfg.data.mixture} ({out})")
    dist.barrier()
    return summary
