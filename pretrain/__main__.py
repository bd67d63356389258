"""``python -m pretrain --config C`` (also ``deepspeed [--num_gpus N] --module pretrain --config C``).

Options override the config file: ``--set section.field=value`` (repeatable, e.g. ``--set train.lr=1e-4``)
and the shortcuts below. ``--resume`` continues from the run's latest checkpoint (model, optimizer,
scheduler, step, data-stream position); without it an existing run folder is trained from scratch.
"""

from __future__ import annotations

import argparse
import json

import torch.distributed as dist

from pretrain.config import apply_overrides, config_from_dict, read_config_file, set_value
from pretrain.train import train

SHORTCUTS = {  # flag -> config key
    "preset": "preset", "shards": "data.shards", "mixture": "data.mixture", "out": "train.out_dir",
    "steps": "train.steps", "lr": "train.lr", "batch_size": "data.batch_size", "joints": "model.joints",
    "frames": "model.frames", "deepspeed_config": "train.deepspeed", "threads": "train.threads",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="JSON or YAML run config (pretrain/config.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. train.lr=1e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest when present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--preset", help="model preset (mpm, mpm-s, tiny)")
    p.add_argument("--shards", help="shard folder (python -m shards build --out)")
    p.add_argument("--mixture", help="data mixture (small, base, large, ...)")
    p.add_argument("--out", help="run folder (train.out_dir)")
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int, help="per-rank micro batch")
    p.add_argument("--joints", type=int, choices=(16, 17))
    p.add_argument("--frames", type=int, help="model.frames (and the clip length unless data.clip_len)")
    p.add_argument("--deepspeed-config", help="DeepSpeed JSON (default: pretrain/configs/cpu_fp32.json "
                   "or gpu_bf16_zero1.json)")
    p.add_argument("--threads", type=int, help="torch CPU threads per rank")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    raw = read_config_file(args.config) if args.config else {}
    for flag, key in SHORTCUTS.items():
        if getattr(args, flag) is not None:
            set_value(raw, key, getattr(args, flag))
    cfg = config_from_dict(apply_overrides(raw, args.overrides), args.config or "config")
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    if dist.get_rank() == 0:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
