"""``python -m pretrain --config C`` (also ``deepspeed [--num_gpus N] --module pretrain --config C``).

The run is described by a config (:mod:`pretrain.config`; ``--config`` a JSON / YAML file or a shipped
config's name, e.g. ``demo``), changed by the shortcut flags below and by ``--set section.field=value``
(repeatable, e.g. ``--set train.lr=1e-4``). ``--resume`` continues from the run's latest checkpoint (model,
optimizer, scheduler, step, data-stream position); without it an existing run folder is trained from scratch.
"""

from __future__ import annotations

import json

import torch.distributed as dist

from pretrain.config import SHIPPED, Config
from pretrain.train import train
from training import settings

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
    cfg, args = settings.cli(Config, argv, "python -m pretrain", __doc__.split("\n\n")[0], SHORTCUTS, SHIPPED)
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    if dist.get_rank() == 0:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
