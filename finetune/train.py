"""Finetuning loop: the lifter on Human3.6M's train split, streamed from the shards, on a DeepSpeed engine.

MPM stage II (released ``trainer.py`` / ``trainutils/finetune_epoch.py``): Adam with AMSGrad, learning rate
7e-4 decayed by 0.97 after every epoch, loss ``lambda_ft * MPJPE(centre) + lambda_seq * MPJPE(sequence)``,
horizontal-flip augmentation of training windows. One process or many (``deepspeed --module finetune``);
checkpoints are DeepSpeed's, carrying the epoch, step, learning-rate schedule and the data stream's position.
At the end, rank 0 exports ``lifter.pt`` and evaluates it on the store's test split (``results.json``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from finetune.checkpoint import save_lifter
from finetune.evaluate import evaluate_h36m, format_h36m_table, write_json
from finetune.model import Lifter, lifting_loss
from finetune.pretrained import load_pretrained
from ingest.store import MotionStore
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
    batch_size: int = 256
    lr: float = 7e-4
    lr_decay: float = 0.97
    epochs: int = 20
    steps_per_epoch: int | None = None
    max_steps: int | None = None
    stride: int = 1
    lambda_ft: float = 1.0
    lambda_seq: float = 1.0
    freeze_shared: bool = False
    flip: bool = True
    seed: int = 0
    num_workers: int = 0
    log_every: int = 50
    deepspeed_config: str | None = None
    eval_flip: bool = False
    eval_subjects: list[str] | None = None
    eval_cameras: list[str] | None = None
    evaluate: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("batch_size", "epochs", "stride", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")


def build_lifter(cfg: FinetuneConfig) -> tuple[Lifter, dict]:
    """The lifter, with pretrained encoder and shared weights when ``cfg.init`` is given (its sizes then
    come from the checkpoint), else randomly initialised from ``cfg.preset`` (the from-scratch baseline).
    Returns (lifter, {"init": path or None, "loaded": number of pretrained tensors})."""
    if cfg.init:
        model_cfg, state = load_pretrained(cfg.init)
        lifter = Lifter(model_cfg, frames=cfg.frames)
        loaded = len(lifter.load_pretrained(state))
    else:
        overrides = {"joints": cfg.joints} | ({"frames": cfg.frames} if cfg.frames else {})
        lifter, loaded = Lifter(preset(cfg.preset, **overrides), frames=cfg.frames), 0
    if cfg.freeze_shared:
        lifter.freeze("shared")
    return lifter, {"init": cfg.init, "loaded": loaded}


def _ensure_distributed_env() -> None:
    """A single process started without a launcher becomes rank 0 of 1 (DeepSpeed needs the variables)."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def _ds_config(cfg: FinetuneConfig) -> dict:
    """The DeepSpeed config: the given JSON file with the batch size set, or plain fp32 data parallelism."""
    ds = json.loads(Path(cfg.deepspeed_config).read_text()) if cfg.deepspeed_config else {}
    ds.pop("optimizer", None)
    ds.pop("scheduler", None)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ds.update(train_micro_batch_size_per_gpu=cfg.batch_size, gradient_accumulation_steps=1,
              train_batch_size=cfg.batch_size * world)
    ds.setdefault("steps_per_print", 10**9)
    return ds


def train(cfg: FinetuneConfig) -> dict:
    """Finetune, checkpoint, export ``lifter.pt`` and (rank 0) evaluate. Returns a summary dict with the
    training record and, when evaluated, the results."""
    import deepspeed  # slow to import; only training needs it

    _ensure_distributed_env()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lifter, init_meta = build_lifter(cfg)
    loader = make_loader(cfg.shards, datasets=["h36m"], split="train", clip_len=lifter.frames,
                         stride=cfg.stride, joints=lifter.cfg.joints, batch_size=cfg.batch_size,
                         num_workers=cfg.num_workers, seed=cfg.seed, steps_per_epoch=cfg.steps_per_epoch,
                         flip=cfg.flip, resampled=False)
    params = [p for p in lifter.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    engine, _, _, _ = deepspeed.initialize(model=lifter, optimizer=optimizer, config=_ds_config(cfg))
    dtype = next(engine.module.parameters()).dtype
    start_epoch, step = 0, 0
    ckpt_dir = out / "checkpoints"
    if (ckpt_dir / "latest").exists():
        _, client = engine.load_checkpoint(str(ckpt_dir))
        start_epoch, step = client["epoch"], client["step"]
        scheduler.load_state_dict(client["scheduler"])
        loader.load_state_dict(client["loader"])
    rank = int(os.environ.get("RANK", "0"))
    log = (out / "metrics.jsonl").open("a") if rank == 0 else None
    t0 = time.time()
    done = False
    for epoch in range(start_epoch, cfg.epochs):
        engine.train()
        for batch in loader:
            x = batch["pose2d"].to(engine.device, dtype)
            y = batch["pose3d"].to(engine.device, dtype)
            valid = (batch["valid2d"] & batch["valid3d"]).to(engine.device)
            centre, seq = engine(x)
            loss, parts = lifting_loss(centre, seq, y, valid, cfg.lambda_ft, cfg.lambda_seq)
            engine.backward(loss)
            engine.step()
            step += 1
            if log and (step % cfg.log_every == 0 or step == 1):
                log.write(json.dumps({"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                                      **parts, "seconds": round(time.time() - t0, 3)}) + "\n")
                log.flush()
            if cfg.max_steps and step >= cfg.max_steps:
                done = True
                break
        if not done:
            scheduler.step()  # MPM decays the learning rate once per epoch
        client = {"epoch": epoch + (0 if done else 1), "step": step, "scheduler": scheduler.state_dict(),
                  "loader": loader.state_dict()}
        engine.save_checkpoint(str(ckpt_dir), tag=f"step{step:08d}", client_state=client)
        if done:
            break
    if log:
        log.close()
    summary = {"config": asdict(cfg), **init_meta, "steps": step, "train_seconds": round(time.time() - t0, 1)}
    if rank == 0:
        lifter = engine.module.float().eval()
        save_lifter(out / "lifter.pt", lifter, meta=summary)
        if cfg.evaluate:
            summary["results"] = _evaluate(cfg, lifter, out, summary)
    return summary


def _evaluate(cfg: FinetuneConfig, lifter: Lifter, out: Path, summary: dict) -> dict:
    device = next(lifter.parameters()).device
    store = MotionStore.open(cfg.store)
    result = evaluate_h36m(lifter.predict_centre, store["h36m"], lifter.frames, lifter.joint_set,
                           flip=cfg.eval_flip, subjects=cfg.eval_subjects, cameras=cfg.eval_cameras,
                           device=str(device))
    write_json(out / "results.json", {"checkpoint": str(out / "lifter.pt"), "train": summary, "unit": "mm",
                                      "frames": lifter.frames, "flip": cfg.eval_flip, "h36m": result})
    print(format_h36m_table(result, title=f"Human3.6M test, {summary['steps']} finetuning steps, init "
                            f"{cfg.init or 'random (from scratch)'}"))
    return result
