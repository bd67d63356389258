"""``python -m finetune --init CKPT --store STORE --shards SHARDS --out OUT``: finetune the lifter on
Human3.6M's train split and evaluate it on the test split (also under ``deepspeed --module finetune``).

``--resume`` continues from ``OUT/checkpoints`` (model, optimizer, schedule, step, data position).
Without ``--init`` the lifter starts from random weights (the from-scratch baseline of ``--preset``).
The 2D input is whatever the store holds for Human3.6M: the ground-truth projection, or the detections
chosen at ingest (``python -m ingest h36m --detections ...``).
"""

from __future__ import annotations

import argparse
import json

import torch.distributed as dist

from finetune.train import FinetuneConfig, train
from pretrain.model import PRESETS


def parse_args(argv: list[str] | None = None) -> tuple[FinetuneConfig, bool]:
    """Command-line options -> (:class:`finetune.train.FinetuneConfig`, resume)."""
    d = FinetuneConfig(store="", shards="", out="")
    p = argparse.ArgumentParser(prog="python -m finetune", description=__doc__.splitlines()[0])
    p.add_argument("--init", default=None, help="pretraining checkpoint (DeepSpeed folder or torch file); "
                   "omit to train from scratch")
    p.add_argument("--store", required=True, help="motion store (evaluation reads its full test sequences)")
    p.add_argument("--shards", required=True, help="shard folder (python -m shards build)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, lifter.pt, results.json")
    p.add_argument("--frames", type=int, default=None, help="window length (default: the pretrained model's)")
    p.add_argument("--preset", default=d.preset, choices=sorted(PRESETS), help="sizes when from scratch")
    p.add_argument("--joints", type=int, default=d.joints, choices=(16, 17), help="joints when from scratch")
    p.add_argument("--subjects", nargs="+", default=None,
                   help="labelled training subjects (default: every train subject; S1 for the semi-supervised "
                   "protocol)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per batch per rank")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--pretrained-lr-scale", type=float, default=d.pretrained_lr_scale,
                   help="learning-rate factor of the pretrained layers (with --init; 1: the same rate)")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay, help="learning-rate factor per epoch")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the windows")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
    p.add_argument("--stride", type=int, default=d.stride, help="frames between training windows")
    p.add_argument("--lambda-ft", type=float, default=d.lambda_ft, help="weight of the centre-frame MPJPE")
    p.add_argument("--lambda-seq", type=float, default=d.lambda_seq, help="weight of the sequence MPJPE")
    p.add_argument("--freeze-shared", action="store_true", help="keep the pretrained shared layers fixed")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no flip augmentation in training")
    p.add_argument("--occlusion-prob", type=float, default=d.occlusion_prob,
                   help="share of training windows with an occluded joint pattern (2D completion)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip (0: none, as MPM)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per rank")
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--deepspeed-config", default=None, help="DeepSpeed JSON (default: "
                   "pretrain/configs/cpu_fp32.json, or gpu_bf16_zero1.json with CUDA)")
    p.add_argument("--eval-flip", action="store_true", help="flip test-time augmentation")
    p.add_argument("--eval-subjects", nargs="+", default=None)
    p.add_argument("--eval-cameras", nargs="+", default=None, help="partial evaluation on these cameras")
    p.add_argument("--no-eval", dest="evaluate", action="store_false")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest when present")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    a = vars(p.parse_args(argv))
    resume = a.pop("resume")
    a.pop("local_rank")
    return FinetuneConfig(**a), resume


def main(argv: list[str] | None = None) -> dict:
    cfg, resume = parse_args(argv)
    summary = train(cfg, resume=resume)
    if dist.get_rank() == 0:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("results", "config")}))
    return summary


if __name__ == "__main__":
    main()
