"""``python -m finetune --init CKPT --store STORE --shards SHARDS --out OUT``: finetune the lifter on
Human3.6M's train split and evaluate it on the test split (also under ``deepspeed --module finetune``).

The run is described by a config (:mod:`finetune.config`; ``--config`` a JSON / YAML file or a shipped
config's name, e.g. ``demo``), changed by the shortcut flags below and by ``--set section.field=value``
(repeatable, e.g. ``--set eval.subjects=[S11]``). ``--resume`` continues from ``OUT/checkpoints`` (model,
optimizer, schedule, step, data position); ``--overwrite`` replaces the run the folder holds; with neither, a
folder holding a run is refused. What the run needs (store, ``--init`` checkpoint, shards, run folder) is
checked first: a mistake there is one line and exit status 2. Without ``--init`` the lifter starts from random
weights (the from-scratch baseline of ``--preset``); ``--backbone`` (``videopose3d``, ``simplebaseline``,
``poseformer``, ``dstformer``; ``--size full|lite``) trains another lifter of the field instead, from scratch or,
with ``--init``, from its own pretraining export (``python -m pretrain --set objective.kind=motionbert``; an
export of another network is refused, naming the ``--backbone`` it fits).
``--refine RUN/lifter.pt`` is MPM's refine stage after a finetuning (:mod:`finetune.refine`; the released
command trains it at ``--lr 1e-4``): the lifter and a refine head trained together, evaluated refined.
The 2D input is whatever the store holds for Human3.6M: the ground-truth projection, or the detections chosen at
ingest (``python -m ingest h36m --detections ...``). The evaluation at the end is ``python -m finetune.evaluate``'s,
with its options under ``eval.``.
"""

from __future__ import annotations

import json

import torch.distributed as dist

from finetune.config import SHIPPED, FinetuneConfig
from finetune.train import check, train
from ingest.cli import user_errors
from training import settings

PROG = "python -m finetune"

SHORTCUTS = {  # flag -> the config key it sets
    "init": "model.init",
    "backbone": "model.backbone",
    "size": "model.size",
    "preset": "model.preset",
    "frames": "model.frames",
    "joints": "model.joints",
    "freeze_shared": "model.freeze_shared",
    "centre_head": "model.centre_head",
    "refine": "model.refine",
    "shards": "data.shards",
    "subjects": "data.subjects",
    "batch_size": "data.batch_size",
    "flip": "data.flip",
    "occlusion_prob": "data.occlusion_prob",
    "steps_per_epoch": "data.steps_per_epoch",
    "out": "train.out",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "lr": "train.lr",
    "pretrained_lr_scale": "train.pretrained_lr_scale",
    "seed": "train.seed",
    "threads": "train.threads",
    "log_every": "train.log_every",
    "deepspeed_config": "train.deepspeed_config",
    "store": "eval.store",
    "evaluate": "evaluate",
}


def main(argv: list[str] | None = None) -> dict:
    cfg, args = settings.cli(FinetuneConfig, argv, PROG, __doc__.split("\n\n")[0], SHORTCUTS, SHIPPED)
    with user_errors(PROG):
        check(cfg, resume=args.resume, overwrite=args.overwrite)
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    if dist.get_rank() == 0:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("results", "config")}))
    return summary


if __name__ == "__main__":
    main()
