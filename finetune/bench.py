"""``python -m finetune.bench``: speed of the evaluation protocol and of a finetuning step, one JSON line.

Measures, on generated input (normalised 2D windows of Human3.6M-17 joints) with the given torch threads:

- ``eval_frames_per_s``: test frames scored per second by centre-frame evaluation
  (:func:`finetune.windows.predict_sequence`: one window per frame, cut with edge padding, batched, the lifter in
  eval mode), and ``eval_seq2seq_frames_per_s`` by sequence-to-sequence evaluation
  (:func:`finetune.windows.predict_clips`, every frame once from consecutive clips);
- ``eval_flops_per_s``: the FLOPs of one window's forward pass (``torch.utils.flop_counter.FlopCounterMode``:
  matrix products and attention) times centre-frame windows per second, against ``matmul_flops_per_s``, a
  2048 x 2048 float32 matmul's rate in the same run (the machine's practical arithmetic limit);
- ``train_windows_per_s``: windows per second of a plain finetuning step (forward, the MPM loss, backward,
  Adam), without DeepSpeed or data loading;
- ``p_mpjpe_poses_per_s``: Procrustes alignments per second of :func:`finetune.metrics.p_mpjpe`.

Options: ``--preset`` (``mpm`` is the released size), ``--frames`` (window, default the preset's),
``--threads``, ``--batch-size``. The full Human3.6M test set (S9 + S11, 4 cameras) has about 540k frames.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from finetune.metrics import p_mpjpe
from finetune.model import Lifter, lifting_loss
from finetune.windows import predict_clips, predict_sequence
from ingest.skeleton import H36M17
from pretrain.model import PRESETS, preset


def _rate(fn, items: int, repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return items * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m finetune.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sequence", type=int, default=2000, help="frames of the evaluated sequence")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = preset(args.preset)
    lifter = Lifter(cfg, frames=args.frames)
    rng = np.random.default_rng(0)
    seq = rng.uniform(-1, 1, (args.sequence, 17, 2)).astype(np.float32)
    lifter.eval()
    eval_rate = _rate(
        lambda: predict_sequence(lifter.predict_centre, seq, lifter.frames, H36M17, batch_size=256),
        args.sequence,
        repeats=1,
    )
    seq2seq_rate = _rate(lambda: predict_clips(lifter.predict_clip, seq, lifter.frames, H36M17), args.sequence)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        lifter.predict_centre(torch.zeros(1, lifter.frames, 17, 2))
    window_flops = counter.get_total_flops()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul_rate = _rate(lambda: a @ b, 2 * 2048**3, repeats=10)
    lifter.train()
    opt = torch.optim.Adam(lifter.parameters(), lr=1e-4, amsgrad=True)
    x = torch.from_numpy(rng.uniform(-1, 1, (args.batch_size, lifter.frames, 17, 2)).astype(np.float32))
    y = torch.from_numpy(rng.normal(0, 0.2, (args.batch_size, lifter.frames, 17, 3)).astype(np.float32))
    valid = torch.ones(args.batch_size, lifter.frames, dtype=torch.bool)

    def step():
        centre, seqs = lifter(x)
        loss, _ = lifting_loss(centre, seqs, y, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_rate = _rate(step, args.batch_size)
    poses = rng.normal(0, 300, (20000, 17, 3))
    pmpjpe_rate = _rate(lambda: p_mpjpe(poses + rng.normal(0, 30, poses.shape), poses), len(poses))
    result = {
        "preset": args.preset,
        "frames": lifter.frames,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "eval_frames_per_s": round(eval_rate, 1),
        "eval_seq2seq_frames_per_s": round(seq2seq_rate, 1),
        "eval_flops_per_window": window_flops,
        "eval_flops_per_s": round(window_flops * eval_rate),
        "matmul_flops_per_s": round(matmul_rate),
        "train_windows_per_s": round(train_rate, 1),
        "p_mpjpe_poses_per_s": round(pmpjpe_rate),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
