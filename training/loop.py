"""The one training loop of both stages (pretraining, :mod:`pretrain.train`; finetuning, :mod:`finetune.train`):
each supplies its model, optimizer, loader and a *step* (a batch to a loss); the loop owns the rest, as
torchtitan's ``Trainer`` or MotionBERT's single ``train.py`` do:

* the process group and the DeepSpeed engine (:mod:`training.engine`: one process, or any launcher);
* resume: model, optimizer, scheduler, step and the data stream's position from ``OUT/checkpoints/latest``, or
  from the newest complete checkpoint before it when that save never finished (:func:`training.engine.resume_tag`);
* the run log ``OUT/metrics.jsonl`` (:class:`training.runlog.MetricsLog`) at the first step, every
  ``log_every`` steps and the last: the losses averaged over the steps since the previous record and over
  the ranks, kept on the device between records (no per-step device sync), the learning rate, samples/s,
  seconds, the epoch and whatever the stage adds (``record``); the same scalars go to the monitor backends
  the DeepSpeed JSON enables (TensorBoard under ``OUT/monitor/`` in the shipped JSONs, or CSV, W&B, Comet);
* checkpoints every ``checkpoint_every`` steps and at the end (client state ``{"config", "step", "data"}``);
* the fp32 weights of the finished run, for the stage's export.

Gradient accumulation (``grad_accum`` micro batches per optimizer step) is DeepSpeed's: the loop counts
optimizer steps (``engine.global_steps``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from training.engine import (
    MONITORS,
    build_engine,
    default_ds_config,
    ensure_distributed,
    fp32_state_dict,
    load_checkpoint,
    load_ds_config,
    save_checkpoint,
    tag_for,
)
from training.runlog import MetricsLog

# (engine, batch, optimizer step, micro step) -> (loss to back-propagate, {name: detached scalar tensor})
Step = Callable[[object, dict, int, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor every rank holds (an all-reduce; a no-op on one rank)."""
    if dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def check_out(out: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds one (``checkpoints/latest`` or a non-empty
    ``metrics.jsonl``) unless ``resume`` continues it or ``overwrite`` replaces it; with ``overwrite`` (and no
    ``resume``) the old checkpoints and log are removed here, so that nothing of the old run is resumed later.

    Raises:
        ValueError: naming the folder and the two flags.
    """
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: give one of them")
    out = Path(out)
    held = [p.name for p in (out / "checkpoints" / "latest", out / "metrics.jsonl") if p.exists() and p.stat().st_size]
    if not held or resume:
        return
    if not overwrite:
        raise ValueError(
            f"{out} holds a run ({', '.join(held)}): pass --resume to continue it or --overwrite to replace it"
        )
    if int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)


def start(out: str | Path, *, seed: int, threads: int | None) -> tuple[int, int]:
    """Join (or create) the process group, set the CPU threads and the seed, create ``out``; returns
    (rank, world size)."""
    rank, world = ensure_distributed()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    Path(out).mkdir(parents=True, exist_ok=True)
    return rank, world


def engine_for(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    *,
    out: str | Path,
    deepspeed_config: str | None,
    micro_batch: int,
    grad_accum: int,
    grad_clip: float,
):
    """The DeepSpeed engine of a run: the stage's model, optimizer and schedule, the DeepSpeed JSON
    (``deepspeed_config`` or :func:`training.engine.default_ds_config`) with batch and clipping from the
    run config. A monitor backend the JSON enables (TensorBoard in the shipped ones; CSV, W&B, Comet)
    without an ``output_path`` writes under ``out/monitor/``."""
    ds = load_ds_config(
        deepspeed_config or default_ds_config(),
        micro_batch=micro_batch,
        grad_accum=grad_accum,
        grad_clip=grad_clip,
        world_size=dist.get_world_size(),
    )
    for name in MONITORS:
        if isinstance(ds.get(name), dict) and ds[name].get("enabled") and not ds[name].get("output_path"):
            ds[name] = {**ds[name], "output_path": str(Path(out) / "monitor")}
    return build_engine(model, optimizer, scheduler, ds)


@dataclass
class Finished:
    """What :func:`run` leaves: the optimizer ``steps`` done, the ``last`` metrics record, the ``seconds``
    of this invocation, and on rank 0 the run's fp32 ``state`` (None on other ranks)."""

    steps: int
    last: dict
    seconds: float
    state: dict[str, torch.Tensor] | None


def run(
    engine,
    loader,
    step: Step,
    *,
    out: str | Path,
    total: int,
    client_state: dict,
    resume: bool = False,
    stop_after: int | None = None,
    log_every: int = 10,
    checkpoint_every: int = 500,
    record: Callable[[dict], dict] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> Finished:
    """Train ``engine`` on ``loader`` (a :class:`shards.stream.ShardLoader`) up to ``total`` optimizer steps.
    Each metrics record carries the loader's ``corrupt_shards`` count (this rank's) beside the losses.

    Args:
        step: the stage's step (:data:`Step`): moves the batch to the device, draws its random numbers and
            returns the loss and the named parts to log.
        out: the run folder (``checkpoints/``, ``metrics.jsonl``).
        total: the run's optimizer steps; ``stop_after`` ends this invocation earlier, after that many
            (with a checkpoint; ``resume`` continues).
        client_state: saved with every checkpoint (the stage's config); ``step`` and ``data`` are added.
        resume: continue from the checkpoint in ``out/checkpoints`` that :func:`training.engine.resume_tag`
            picks (none: start over).
        log_every, checkpoint_every: in optimizer steps.
        record: extra fields of a metrics record from the last batch (called on every rank: it may use
            collectives).

    Raises:
        RuntimeError: the stream yields no batch in an epoch (every shard corrupt), or DeepSpeed cannot load
            the checkpoint resumed from.
        OSError: a checkpoint could not be written (:func:`training.engine.save_checkpoint`).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    ckpt_dir = Path(out) / "checkpoints"
    client = load_checkpoint(engine, ckpt_dir) if resume else None
    if client is not None:
        loader.load_state_dict(client["data"])
    done = engine.global_steps
    end = total if stop_after is None else min(total, done + stop_after)
    log = MetricsLog(Path(out) / "metrics.jsonl", enabled=rank == 0, resume_step=done if resume else None)

    def save() -> None:
        save_checkpoint(engine, ckpt_dir, done, {**client_state, "step": done, "data": loader.state_dict()})

    saved_at = done if client is not None else -1
    sums, names, count, samples = None, [], 0, 0
    t0 = t_log = time.perf_counter()
    last: dict = {}
    micro = 0
    bar = tqdm(total=total, initial=done, disable=rank != 0 or not progress, desc=desc, unit="step")
    engine.train()
    while done < end:
        epoch_start = micro
        for batch in loader:
            loss, parts = step(engine, batch, done, micro)
            engine.backward(loss)
            engine.step()
            micro += 1
            values = torch.stack([loss.detach(), *parts.values()]).double()
            sums, names = (values, ["loss", *parts]) if sums is None else (sums + values, names)
            count += 1
            samples += len(batch["pose2d"]) * world
            if engine.global_steps == done:  # a micro batch of gradient accumulation
                continue
            done = engine.global_steps
            bar.update(1)
            if done % log_every == 0 or done == 1 or done == end:
                means = mean_across_ranks(sums / count).cpu()
                now = time.perf_counter()
                last = {
                    "step": done,
                    "epoch": loader.epoch,
                    **dict(zip(names, means.tolist(), strict=True)),
                    "lr": engine.get_lr()[0],
                    "samples_per_s": samples / (now - t_log),
                    "seconds": round(now - t0, 3),
                    "corrupt_shards": loader.corrupt_shards,
                    **(record(batch) if record else {}),
                }
                log.write(last)
                if engine.monitor.enabled:  # TensorBoard & co (DeepSpeed's monitor, rank 0 writes)
                    engine.monitor.write_events(
                        [
                            (f"{desc}/{k}", v, done)
                            for k, v in last.items()
                            if k != "step" and isinstance(v, int | float)
                        ]
                    )
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                sums, count, samples, t_log = None, 0, 0, now
            if done % checkpoint_every == 0 or done == end:
                save()
                saved_at = done
            if done >= end:
                break
        if micro == epoch_start:
            raise RuntimeError(
                f"{getattr(loader.cfg, 'root', loader)}: the stream yielded no batch in epoch "
                f"{loader.epoch - 1} ({loader.corrupt_shards} corrupt shard reads)"
            )
    bar.close()
    if saved_at != done:  # nothing trained (no steps left): the export still comes from a checkpoint
        save()
    dist.barrier()  # every rank's checkpoint files are complete
    state = fp32_state_dict(engine, ckpt_dir, tag_for(done)) if rank == 0 else None
    return Finished(steps=done, last=last, seconds=round(time.perf_counter() - t0, 1), state=state)
