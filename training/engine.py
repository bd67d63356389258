"""DeepSpeed plumbing of the one training loop (:mod:`training.loop`): process group, engine, optimizer, schedule,
checkpoints and the fp32 weights of a run.

The engine runs on whatever DeepSpeed's accelerator is (CUDA with NCCL, or ``DS_ACCELERATOR=cpu`` with
gloo), in one process (no launcher: a one-rank group is created) or under ``deepspeed`` / ``torchrun``.
Checkpoints are DeepSpeed's own (``<dir>/<tag>/`` plus a ``latest`` file); the caller's client state (run
config, step, data-stream position) is stored with them in ``mp_rank_00_model_states.pt``. A save ends with a
marker, ``<tag>/complete.json``, and only then moves ``latest``; resuming skips a tag without it
(:func:`save_checkpoint`, :func:`resume_tag`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import sys
from pathlib import Path

import deepspeed
import numpy as np
import torch
import torch.distributed as dist

from ingest.atomic import write_json, write_text
from ingest.untrusted import load_torch

DS_CONFIG_DIR = Path(__file__).resolve().parent / "deepspeed"  # installed as package data
MONITORS = ("tensorboard", "csv_monitor", "wandb", "comet")  # DeepSpeed's ``monitor`` backends (config sections)
# DeepSpeed fields that the run config owns -> the config key that sets them
RUN_CONFIG_OWNS = {
    "train_micro_batch_size_per_gpu": "data.batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "train_batch_size": "data.batch_size x train.grad_accum x ranks",
    "gradient_clipping": "train.grad_clip",
}
COMPLETE = "complete.json"  # written into a tag folder last, once every rank's files of the save are in
TAG = re.compile(r"step(\d+)")  # the tags of tag_for


def ensure_distributed() -> tuple[int, int]:
    """Initialise torch.distributed through DeepSpeed once per process; returns (rank, world_size).

    Without a launcher (no ``RANK`` etc. in the environment) a one-process group on a free local port is
    created, so ``python -m pretrain`` and library calls work like a launched rank 0.
    """
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        deepspeed.init_distributed(verbose=False)
    return dist.get_rank(), dist.get_world_size()


def default_ds_config() -> Path:
    """``training/deepspeed/gpu_bf16_zero1.json`` when CUDA is available, else ``cpu_fp32.json``."""
    return DS_CONFIG_DIR / ("gpu_bf16_zero1.json" if torch.cuda.is_available() else "cpu_fp32.json")


def load_ds_config(path: str | Path, *, micro_batch: int, grad_accum: int, grad_clip: float, world_size: int) -> dict:
    """A DeepSpeed config file completed with the batch and clipping fields of the run config.

    The file holds what DeepSpeed owns (precision, ZeRO, communication); ``train_micro_batch_size_per_gpu``,
    ``gradient_accumulation_steps``, ``train_batch_size`` and ``gradient_clipping`` come from the typed run
    config only (``data.batch_size``, ``train.grad_accum``, ``train.grad_clip``), so a file that sets them
    is refused rather than silently overridden.

    ``path`` is a file, or the name of a shipped one (``cpu_fp32``, ``cpu_bf16``, ``gpu_bf16_zero1``, ...:
    ``training/deepspeed/<name>.json``).

    Raises:
        ValueError: unreadable file, not a JSON object, or a field the run config owns (naming the file).
    """
    path = Path(path)
    if not path.is_file() and (DS_CONFIG_DIR / f"{path}.json").is_file():
        path = DS_CONFIG_DIR / f"{path}.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the DeepSpeed config: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: a DeepSpeed config must be a JSON object")
    owned = sorted(set(cfg) & set(RUN_CONFIG_OWNS))
    if owned:
        raise ValueError(
            f"{path}: {owned} are set by the run config "
            f"({', '.join(RUN_CONFIG_OWNS[k] for k in owned)}); remove them from the DeepSpeed file"
        )
    cfg.update(
        train_micro_batch_size_per_gpu=micro_batch,
        gradient_accumulation_steps=grad_accum,
        train_batch_size=micro_batch * grad_accum * world_size,
        gradient_clipping=grad_clip,
    )
    return cfg


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] | list[float]
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter) with weight decay on matrices only: biases, norm and batch-norm
    scales, tokens and positional tables (parameters with fewer than 2 dims, or named ``*emb*`` /
    ``*token*``) are not decayed, the usual transformer practice. The fused (single-kernel) update is used
    on CPU and CUDA."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (plain if p.ndim < 2 or "emb" in name or "token" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=True)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate factor at ``step``: linear warm-up from 1/warmup to 1 over ``warmup`` steps, then a
    cosine from 1 to ``min_ratio`` at ``total`` (SGDR, Loshchilov & Hutter 2017, without restarts)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable ``LambdaLR`` factor (so the scheduler state round-trips through checkpoints)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.warmup, self.total, self.min_ratio)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float):
    """``LambdaLR`` with :class:`WarmupCosine`; DeepSpeed steps it once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total, min_ratio))


def build_engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, ds_config: dict):
    """``deepspeed.initialize`` with a client optimizer and scheduler; returns the engine.

    With one rank and no ZeRO there is nothing to average, so the engine's per-step gradient all-reduce
    (a flatten, a reduction and an unflatten of every gradient) is switched off."""
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, dist_init_required=False
    )
    if engine.world_size == 1 and engine.zero_optimization_stage() == 0:
        engine.enable_backward_allreduce = False
    return engine


def compute_dtype(engine) -> torch.dtype:
    """The dtype the engine's module computes in (bf16 / fp16 when enabled in the config, else fp32)."""
    if engine.bfloat16_enabled():
        return torch.bfloat16
    return torch.float16 if engine.fp16_enabled() else torch.float32


def autocast(engine) -> torch.autocast:
    """The autocast context of the engine's ``torch_autocast`` section (``cpu_bf16.json``; disabled when the
    section is off), for model calls that do not go through ``engine.forward``, which enters it by itself:
    a submodule's method such as :meth:`pretrain.model.MPM.lift` reached through the engine."""
    enabled = bool(engine.torch_autocast_enabled())
    dtype = engine.torch_autocast_dtype() if enabled else None
    return torch.autocast(engine.device.type, dtype=dtype, enabled=enabled)


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed for the random draws (masks, dropout) of one step on one rank, so a resumed run
    draws exactly what the uninterrupted run would have."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def save_checkpoint(engine, ckpt_dir: str | Path, step: int, client_state: dict) -> str:
    """DeepSpeed checkpoint ``<ckpt_dir>/step<step>`` (all ranks must call); returns the tag.

    A save is marked complete only once it is: DeepSpeed writes every rank's files and waits for all ranks,
    then rank 0 writes the tag's :data:`COMPLETE` marker (the names of the files saved) and only then points
    ``latest`` at the tag, each file under a temporary name renamed when written (DeepSpeed's own ``latest``,
    written in place and before other ranks finish, is not used). A save that stops midway (the process
    killed, the disk full) leaves a tag folder without the marker and ``latest`` where it was, and
    :func:`resume_tag` never resumes from it; a tag saved again (a resumed run passing the same step) loses
    its marker first.

    Raises:
        OSError: a checkpoint file could not be written (disk full, file size limit, ...), naming the tag
            folder, the cause and the free space there; the folder is left without its marker.
    """
    tag = tag_for(step)
    folder = Path(ckpt_dir) / tag
    rank = dist.get_rank()
    if rank == 0:
        (folder / COMPLETE).unlink(missing_ok=True)
    try:
        engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=False)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
        free = shutil.disk_usage(ckpt_dir).free / 2**30
        raise OSError(
            f"{folder}: checkpoint not written ({type(exc).__name__}: {exc}); {free:.1f} GiB free there. "
            f"It is left incomplete (no {COMPLETE}): --resume will not load it"
        ) from exc
    if rank == 0:
        files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        write_json(folder / COMPLETE, {"step": step, "files": files})
        write_text(Path(ckpt_dir) / "latest", tag)
    return tag


def incomplete(folder: Path) -> str | None:
    """Why the checkpoint tag ``folder`` cannot be resumed from, or None when its save completed (its
    :data:`COMPLETE` marker exists and every file the marker lists is there)."""
    if not folder.is_dir():
        return "no such folder"
    try:
        files = json.loads((folder / COMPLETE).read_text())["files"]
    except FileNotFoundError:
        return f"no {COMPLETE}: its save did not finish"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable {COMPLETE}: {exc}"
    missing = [name for name in files if not (folder / name).is_file()]
    return f"{missing[0]} is missing" if missing else None


def resume_tag(ckpt_dir: str | Path) -> str | None:
    """The checkpoint tag to resume from in ``ckpt_dir``: the one ``latest`` names when complete
    (:func:`incomplete`); else the newest complete ``step<N>`` tag before it (the newest of all when ``latest``
    is missing, as after a run killed in its first save, or names no ``step<N>``); None when there is no
    complete one (the run starts over). Each tag skipped, and the fallback taken, is said on stderr (rank 0),
    naming the folder and why."""
    ckpt_dir = Path(ckpt_dir)
    latest = ckpt_dir / "latest"
    named = latest.read_text().strip() if latest.is_file() else ""
    notes = []
    if named:
        why = incomplete(ckpt_dir / named)
        if why is None:
            return named
        notes.append(f"{ckpt_dir / named} (named by 'latest'): incomplete checkpoint, skipped: {why}")
    bound = int(m[1]) if (m := TAG.fullmatch(named)) else math.inf
    steps = sorted(
        (int(m[1]), p.name) for p in (ckpt_dir.iterdir() if ckpt_dir.is_dir() else ()) if (m := TAG.fullmatch(p.name))
    )
    chosen = None
    for step, name in reversed(steps):
        if step >= bound:
            continue
        why = incomplete(ckpt_dir / name)
        if why is None:
            chosen = name
            break
        notes.append(f"{ckpt_dir / name}: incomplete checkpoint, skipped: {why}")
    if notes and (not dist.is_initialized() or dist.get_rank() == 0):
        notes.append(f"resuming from {ckpt_dir / chosen}" if chosen else "no complete checkpoint: starting over")
        print("\n".join(f"resume: {note}" for note in notes), file=sys.stderr, flush=True)
    return chosen


def load_checkpoint(engine, ckpt_dir: str | Path) -> dict | None:
    """Restore model, optimizer and scheduler from the checkpoint :func:`resume_tag` picks in ``ckpt_dir``
    (the one ``latest`` names, or the newest complete one before it); returns the client state, or None when
    the folder has no complete checkpoint.

    DeepSpeed's loader unpickles its files with torch's full unpickler, which runs whatever a file names; so
    every ``.pt`` of the checkpoint is first read as data only (:func:`ingest.untrusted.load_torch`, with
    the few DeepSpeed classes its ZeRO optimizer states hold admitted: :func:`deepspeed_checkpoint_types`),
    and a file holding anything else stops the resume before DeepSpeed opens it.

    Raises:
        ValueError: a checkpoint file that is not plain data (named).
        RuntimeError: a checkpoint DeepSpeed cannot load.
    """
    tag = resume_tag(ckpt_dir)
    if tag is None:
        return None
    with torch.serialization.safe_globals(deepspeed_checkpoint_types()):
        for path in sorted((Path(ckpt_dir) / tag).glob("*.pt")):
            load_torch(path)  # raises, naming the file, before DeepSpeed's own unpickling
    path, client = engine.load_checkpoint(
        str(ckpt_dir), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise RuntimeError(f"{Path(ckpt_dir) / tag}: DeepSpeed could not load the checkpoint")
    return client


def deepspeed_checkpoint_types() -> list[type]:
    """The classes DeepSpeed's own checkpoint files name besides tensors and plain values (ZeRO optimizer
    states: the loss scaler, the ZeRO stage enum, parameter fragment addresses; found by loading ZeRO-1
    checkpoints with ``weights_only``). They hold plain fields; admitting them runs no code of the file."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def fp32_state_dict(engine, ckpt_dir: str | Path, tag: str) -> dict[str, torch.Tensor]:
    """The module's weights in fp32 on CPU. Under ZeRO (stage >= 1) the fp32 master weights are gathered
    from the saved checkpoint ``tag`` (DeepSpeed ``zero_to_fp32``); otherwise the module itself holds
    them. Call on one rank after every rank's :func:`save_checkpoint` of ``tag`` has returned."""
    if engine.zero_optimization_stage() > 0:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)  # buffers included
    else:
        state = engine.module.state_dict()
    return {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).clone() for k, v in state.items()
    }
