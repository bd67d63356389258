"""Finetuning: the lifter on Human3.6M's train split, streamed from the shards, run by the one training loop
(:mod:`training.loop`), then exported and evaluated by ``python -m finetune.evaluate``'s own function.

MPM stage II (released ``trainer.py`` / ``trainutils/finetune_epoch.py``): Adam with AMSGrad, learning rate
7e-4 decayed by 0.97 after every epoch, loss ``lambda_ft * MPJPE(centre) + lambda_seq * MPJPE(sequence)``,
horizontal-flip augmentation of the training windows; optionally occluded inputs (``occlusion_prob``:
joints hidden by the pretrained mask token, for the incomplete-2D lifting of MPM's table 4). MPM's refine
stage (``model.refine``: a finetuned ``lifter.pt`` to start from; :mod:`finetune.refine`) runs through the same
loop: the lifter and a refine head trained together on the refined centre frame's MPJPE, the batches carrying
the camera and the pelvis for the back-projection. The options
are :class:`finetune.config.FinetuneConfig`. Another backbone (``model.backbone``: VideoPose3D, SimpleBaseline3D,
PoseFormer, DSTformer; :class:`finetune.backbone_lifter.BackboneLifter`) runs through the same loop, optimizer,
loss (its centre term alone for a centre-frame network) and data, from scratch or from its pretraining export
(``model.init``; ``python -m pretrain --set objective.kind=motionbert``), and is evaluated by its own protocol.

Outputs in ``train.out``: ``checkpoints/`` (DeepSpeed; client state ``{"config", "step", "data"}``, saved at
the end of every epoch and of the run), ``metrics.jsonl``, ``lifter.pt`` (:mod:`finetune.checkpoint`) and,
evaluated on the store's test split by rank 0 (:func:`finetune.evaluate.evaluate_lifter`), ``results.json``.

Reproducibility: dropout and occlusions of step s on rank r are drawn from seeds derived from (seed, s, r), and
the data stream's position is checkpointed, so a resumed run repeats the uninterrupted one's losses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import describe, load_lifter, rebuild, save_lifter
from finetune.completion import training_occlusions
from finetune.config import FinetuneConfig
from finetune.evaluate import check_store, evaluate_lifter
from finetune.model import PRETRAINED_PREFIXES, Lifter, lifting_loss
from finetune.refine import RefineHead, refine_centre, refine_loss
from pretrain.export import load_pretrained, load_pretrained_backbone
from shards.stream import LoaderOptions, make_loader
from training import loop
from training.engine import compute_dtype, step_seed


class EpochDecay:
    """``LambdaLR`` factor ``decay ** (step // every)``: MPM's per-epoch decay (``every`` the steps of an
    epoch, or ``train.decay_every``), stepped by DeepSpeed after every optimizer step (picklable, so it
    round-trips through checkpoints)."""

    def __init__(self, every: int, decay: float):
        self.every, self.decay = every, decay

    def __call__(self, step: int) -> float:
        return self.decay ** (step // self.every)


def param_groups(lifter: Lifter | BackboneLifter, lr: float, pretrained_scale: float = 1.0) -> list[dict]:
    """Optimizer groups: the trainable parameters that pretraining provides (MPM's ``encoder_2d``, ``shared``,
    ``mask_token_2d``, the 3D decoder as ``seq_head`` and its ``dec_pos_emb``:
    :data:`finetune.model.PRETRAINED_PREFIXES`; every parameter of another backbone, which MotionBERT's objective
    pretrains whole) at ``lr * pretrained_scale``, the new ones (MPM's strided transformer and centre head) at
    ``lr`` (a lower rate for pretrained layers is standard finetuning practice, e.g. layer-wise decay in BEiT /
    MAE). Each group is named (``"pretrained"``, ``"new"``)."""
    groups = {"pretrained": [], "new": []}
    whole = isinstance(lifter, BackboneLifter)
    for name, p in lifter.named_parameters():
        if p.requires_grad:
            groups["pretrained" if whole or name.startswith(PRETRAINED_PREFIXES) else "new"].append(p)
    scales = {"pretrained": pretrained_scale, "new": 1.0}
    return [{"name": k, "params": v, "lr": lr * scales[k]} for k, v in groups.items() if v]


def build_lifter(cfg: FinetuneConfig) -> tuple[Lifter | BackboneLifter, dict]:
    """The lifter, with pretrained encoder and shared weights when ``model.init`` is given (its sizes then
    come from the checkpoint, :func:`pretrain.export.load_pretrained`), else randomly initialised from
    ``model.preset`` (the from-scratch baseline); another ``model.backbone``
    (:class:`finetune.backbone_lifter.BackboneLifter`) from scratch, or whole from ``model.init``, a pretraining
    export of that backbone (:func:`pretrain.export.load_pretrained_backbone`). A refine stage (``model.refine``)
    loads the finetuned lifter file and attaches a :class:`finetune.refine.RefineHead` unless it has one. Returns
    (lifter, {"init", "loaded": tensors copied, and for a refine stage "refine_from"}).

    Raises:
        ValueError / FileNotFoundError: ``model.init`` unusable, or pretrained for another network (naming the
            file, what it holds and the ``--backbone`` it fits), or ``model.frames`` other than the export's; a
            refine stage whose file holds another backbone than ``model.backbone``.
    """
    m = cfg.model
    if m.refine:
        lifter, _ = load_lifter(m.refine)
        name = describe(lifter)["backbone"]
        if name != m.backbone:
            raise ValueError(
                f"model.refine={m.refine}: its lifter's backbone is {name}, but model.backbone is {m.backbone} "
                f"(--backbone {name})"
            )
        loaded = len(lifter.state_dict())
        if lifter.refiner is None:
            lifter.refiner = RefineHead(lifter.joints, m.refine_hidden, m.refine_dropout)
        if m.freeze_shared:
            lifter.freeze("shared")
        return lifter.train(), {"init": None, "loaded": loaded, "refine_from": m.refine}
    if m.backbone != "mpm":
        if not m.init:
            return BackboneLifter(m.backbone, m.backbone_network()), {"init": None, "loaded": 0}
        name, net = load_pretrained_backbone(m.init)
        if name != m.backbone:
            raise ValueError(
                f"model.init: {m.init} is a pretrained {name}, not a {m.backbone}: finetune it with --backbone {name}"
            )
        if m.frames is not None and m.frames != net.frames:
            raise ValueError(
                f"model.frames={m.frames}: the pretrained {name} ({m.init}) takes windows of {net.frames} "
                "frames; its sizes come from the export (leave model.frames unset)"
            )
        return BackboneLifter(name, net.train()), {"init": m.init, "loaded": len(net.state_dict())}
    if m.init:
        mpm = load_pretrained(m.init)
        lifter = Lifter(mpm.cfg, frames=m.frames, centre_head=m.centre_head)
        loaded = len(lifter.load_pretrained(mpm.state_dict()))
    else:
        lifter, loaded = Lifter(m.network(), frames=m.frames, centre_head=m.centre_head), 0
    if m.freeze_shared:
        lifter.freeze("shared")
    return lifter, {"init": m.init, "loaded": loaded}


def build_loader(cfg: FinetuneConfig, lifter: Lifter | BackboneLifter):
    """The training stream: Human3.6M's train windows of ``data.subjects`` (every train subject when unset),
    each once per epoch, at the lifter's window length and joint set (``shards.stream.make_loader``), with the
    camera and the pelvis (``with_camera``) when the lifter has a refine head."""
    d = cfg.data
    labelled = {"h36m": {"subjects": d.subjects}} if d.subjects else None
    return make_loader(
        d.shards,
        LoaderOptions(
            mixture=labelled,
            datasets=None if labelled else ["h36m"],
            split="train",
            clip_len=lifter.frames,
            stride=d.stride,
            joints=lifter.joints,
            batch_size=d.batch_size,
            num_workers=d.num_workers,
            seed=cfg.train.seed,
            steps_per_epoch=d.steps_per_epoch,
            flip=d.flip,
            resampled=False,
            shuffle_segments=d.shuffle_segments,
            max_corrupt=d.max_corrupt,
            with_camera=lifter.refiner is not None,
        ),
    )


def check(cfg: FinetuneConfig, *, resume: bool = False, overwrite: bool = False) -> None:
    """What the run will need, checked before it starts (the command line calls it under
    :func:`ingest.cli.user_errors`): the evaluation store, the pretrained checkpoint (``model.init``, by
    building the lifter), the shards and their clip length (by building the loader), the run folder
    (:func:`training.loop.check_out`).

    Raises:
        ValueError / FileNotFoundError: naming the key, folder or file.
    """
    if cfg.evaluate:
        check_store(cfg.eval)
    build_loader(cfg, build_lifter(cfg)[0])
    loop.check_out(cfg.train.out, resume=resume, overwrite=overwrite)


def train(cfg: FinetuneConfig, resume: bool = False, progress: bool = True) -> dict:
    """Finetune (or, with ``resume``, continue from ``train.out/checkpoints``), export ``lifter.pt`` and, on
    rank 0, evaluate. Returns a summary: the config, ``init``, ``loaded``, ``steps``, ``train_seconds`` and,
    when evaluated, ``results``.

    Raises:
        ValueError / FileNotFoundError: bad options, no Human3.6M train window in the shards, unusable
            pretrained checkpoint (each naming the path).
    """
    d, t = cfg.data, cfg.train
    if cfg.evaluate:
        check_store(cfg.eval)  # before training, not found missing after it
    rank, _ = loop.start(t.out, seed=t.seed, threads=t.threads)
    out = Path(t.out)
    lifter, init_meta = build_lifter(cfg)
    loader = build_loader(cfg, lifter)
    optimizer = torch.optim.Adam(
        param_groups(lifter, t.lr, t.pretrained_lr_scale if cfg.model.init else 1.0), amsgrad=True
    )
    epoch_steps = max(1, len(loader) // t.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, EpochDecay(t.decay_every or epoch_steps, t.lr_decay))
    engine = loop.engine_for(
        lifter,
        optimizer,
        scheduler,
        out=out,
        deepspeed_config=t.deepspeed_config,
        micro_batch=d.batch_size,
        grad_accum=t.grad_accum,
        grad_clip=t.grad_clip,
    )
    dtype, device = compute_dtype(engine), engine.device
    refiner = engine.module.refiner  # called beside the engine's forward, on its own module's weights

    def step(engine, batch: dict, done: int, micro: int):
        micro_step = done * t.grad_accum + micro % t.grad_accum
        torch.manual_seed(step_seed(t.seed, micro_step, rank))  # dropout: the same draws on a resumed run
        x = batch["pose2d"].to(device, dtype)
        y = batch["pose3d"].to(device, dtype)
        valid = (batch["valid2d"] & batch["valid3d"]).to(device)
        hidden = None
        if d.occlusion_prob > 0:  # the same draws on a resumed run: seeded by (seed, micro step, rank)
            rng = np.random.default_rng([t.seed, micro_step, rank])
            hidden = torch.from_numpy(training_occlusions(len(x), lifter.joint_set, d.occlusion_prob, rng))
            hidden = hidden.to(device)
        centre, seq = engine(x, hidden)  # seq is None for a centre-frame backbone: the loss is its centre term
        if refiner is not None:  # the refine stage: the refined centre frame's MPJPE alone (finetune.refine)
            mid = x.shape[1] // 2
            camera, root = batch["camera"][:, mid].to(device), batch["root"][:, mid, 2].to(device)
            refined = refine_centre(refiner, centre, x[:, mid, :, :2], root, camera)
            return refine_loss(refined.float(), centre.float(), y.float(), valid)
        seq = None if seq is None else seq.float()
        return lifting_loss(centre.float(), seq, y.float(), valid, t.lambda_ft, t.lambda_seq)

    total = t.epochs * epoch_steps if t.max_steps is None else min(t.max_steps, t.epochs * epoch_steps)
    config = {**cfg.to_dict(), "lifter": describe(lifter)}
    finished = loop.run(
        engine,
        loader,
        step,
        out=out,
        total=total,
        client_state={"config": config},
        resume=resume,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every or epoch_steps,
        desc="finetune",
        progress=progress,
    )
    summary = {
        "config": cfg.to_dict(),
        **init_meta,
        "steps": finished.steps,
        "train_seconds": finished.seconds,
        "corrupt_shards": loader.corrupt_per_dataset,
    }
    if rank == 0:
        start = cfg.model.init or "random (from scratch)"
        export = rebuild(describe(lifter))
        export.load_state_dict(finished.state)
        export.eval()
        save_lifter(out / "lifter.pt", export, meta=summary)
        if cfg.evaluate:
            summary["results"] = evaluate_lifter(
                export.to(device),
                cfg.eval,
                out,
                summary,
                str(out / "lifter.pt"),
                title=f"Human3.6M test, {cfg.model.backbone}, {finished.steps} finetuning steps, "
                + (f"refine stage from {cfg.model.refine}" if cfg.model.refine else f"init {start}"),
            )["h36m"]
    dist.barrier()
    return summary
