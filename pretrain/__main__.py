"""``python -m pretrain --config C`` (also ``deepspeed [--num_gpus N] --module pretrain --config C``).

The run is described by a config (:mod:`pretrain.config`; ``--config`` a JSON / YAML file or a shipped
config's name, e.g. ``demo``), changed by the shortcut flags below and by ``--set section.field=value``
(repeatable, e.g. ``--set train.lr=1e-4``). ``--resume`` continues from the run's latest checkpoint (model,
optimizer, scheduler, step, data-stream position); ``--overwrite`` replaces the run the folder holds; with
neither, a folder holding a run is refused. What the run needs (shards, mixture, clip length, run folder) is
checked first: a mistake there is one line and exit status 2. ``--set objective.kind=motionbert --set
model.backbone=dstformer [--set model.size=lite]`` pretrains MotionBERT's network with MotionBERT's objective
(:mod:`pretrain.motionbert`) instead of MPM's.
"""

from __future__ import annotations

import json

import torch.distributed as dist

from ingest.cli import user_errors
from pretrain.config import SHIPPED, Config
from pretrain.train import check, train
from training import settings

PROG = "python -m pretrain"

SHORTCUTS = {  # flag -> the config key it sets
    "preset": "preset",
    "shards": "data.shards",
    "mixture": "data.mixture",
    "out": "train.out",
    "steps": "train.steps",
    "lr": "train.lr",
    "batch_size": "data.batch_size",
    "joints": "model.joints",
    "frames": "model.frames",
    "deepspeed_config": "train.deepspeed_config",
    "threads": "train.threads",
    "seed": "train.seed",
}


def main(argv: list[str] | None = None) -> dict:
    cfg, args = settings.cli(Config, argv, PROG, __doc__.split("\n\n")[0], SHORTCUTS, SHIPPED)
    with user_errors(PROG):
        check(cfg, resume=args.resume, overwrite=args.overwrite)
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    if dist.get_rank() == 0:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
