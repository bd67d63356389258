"""``python -m finetune.bench``: speed of the evaluation protocol and of a finetuning step, one JSON line.

Measures, on generated input (normalised 2D windows of Human3.6M-17 joints) with the given torch threads:

- ``eval_frames_per_s``: test frames scored per second by centre-frame evaluation
  (:func:`finetune.windows.predict_sequence`: one window per frame with edge padding, the per-frame layers run
  once per frame and the windows cut from their features, batched, the lifter in eval mode), and
  ``eval_seq2seq_frames_per_s`` by sequence-to-sequence evaluation (:func:`finetune.windows.predict_clips`,
  every frame once from consecutive clips);
- ``eval_flops_per_window``: the FLOPs of one window's centre-frame prediction with nothing shared
  (:meth:`finetune.model.Lifter.predict_centre` on one window: per-frame layers on all its T frames, the temporal
  transformer, the centre head, never the sequence head), counted by :func:`finetune.model.flop_counter` (torch's
  ``FlopCounterMode``: matrix products, and attention, whose CPU kernel torch's table lacks:
  ``eval_attention_flops_per_window`` of them); ``eval_flops_per_s``: that times centre-frame windows per second,
  the effective rate (above what is computed, since the per-frame layers run once per frame), against
  ``matmul_flops_per_s``, a 2048 x 2048 matmul's rate in the same run and dtype (the machine's practical
  arithmetic limit); ``eval_effective_share`` is their ratio. Every rate is the best of a few timed runs
  (``timeit``'s advice: on a shared machine the slower runs time the neighbours);
- ``train_windows_per_s``: windows per second of a plain finetuning step (forward, the MPM loss, backward,
  Adam; float32), without DeepSpeed or data loading;
- ``p_mpjpe_poses_per_s``: Procrustes alignments per second of :func:`finetune.metrics.p_mpjpe`.

Options: ``--preset`` (``mpm`` is the released size), ``--frames`` (window, default the preset's),
``--threads``, ``--batch-size`` (training), ``--eval-batch`` (windows per call; default
:func:`finetune.windows.centre_batch_size`), ``--dtype`` (``bf16``: evaluation under bfloat16 autocast and
the reference matmul in bfloat16), ``--device`` (``cpu``, or ``cuda``: the lifter, the reference matmul and the
training step on the GPU; ``eval_attention_flops_per_window`` then counts nothing, the GPU attention kernels
being in torch's own table). The full Human3.6M test set (S9 + S11, 4 cameras) has about 540k frames.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import timeit

import numpy as np
import torch

from finetune.metrics import p_mpjpe
from finetune.model import Lifter, flop_counter, lifting_loss
from finetune.windows import centre_batch_size, predict_clips, predict_sequence
from ingest.skeleton import H36M17
from pretrain.model import PRESETS, preset


def _rate(fn, items: int, repeats: int = 3, sync=lambda: None) -> float:
    """Items per second of ``fn`` (``items`` per call): the fastest of ``repeats`` timed calls after a warm-up one
    (``timeit.repeat``; as its documentation advises, the minimum: on a shared machine the slower calls measure
    the other tenants, and the evaluation and matmul rates are then compared at their best); ``sync`` waits for
    the device's queued work (``torch.cuda.synchronize``)."""

    def call():
        fn()
        sync()

    call()  # warm-up
    return items / min(timeit.repeat(call, number=1, repeat=repeats))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m finetune.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sequence", type=int, default=600, help="frames of the evaluated sequence (timed 3 times)")
    p.add_argument("--eval-batch", type=int, default=None, help="windows per call (default: by memory)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="evaluation and reference matmul dtype")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the lifter runs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = preset(args.preset)
    lifter = Lifter(cfg, frames=args.frames).to(device)
    rng = np.random.default_rng(0)
    seq = rng.uniform(-1, 1, (args.sequence, 17, 2)).astype(np.float32)
    lifter.eval()
    bf16 = args.dtype == "bf16"

    def autocast():
        return torch.autocast(device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()

    def centre():
        with autocast():
            predict_sequence(lifter, seq, lifter.frames, H36M17, batch_size=args.eval_batch, device=device)

    def clips():
        with autocast():
            predict_clips(lifter.predict_clip, seq, lifter.frames, H36M17, device=device)

    eval_rate = _rate(centre, args.sequence)
    seq2seq_rate = _rate(clips, args.sequence)
    with torch.no_grad(), flop_counter() as counter:
        lifter.predict_centre(torch.zeros(1, lifter.frames, 17, 2, device=device))
    window_flops = counter.get_total_flops()
    attention_flops = counter.get_flop_counts()["Global"].get(
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, 0
    )
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = (torch.randn(2048, 2048, dtype=dtype, device=device) for _ in range(2))
    matmul_rate = _rate(lambda: a @ b, 2 * 2048**3, repeats=10, sync=sync)
    lifter.train()
    opt = torch.optim.Adam(lifter.parameters(), lr=1e-4, amsgrad=True)
    x = torch.from_numpy(rng.uniform(-1, 1, (args.batch_size, lifter.frames, 17, 2)).astype(np.float32)).to(device)
    y = torch.from_numpy(rng.normal(0, 0.2, (args.batch_size, lifter.frames, 17, 3)).astype(np.float32)).to(device)
    valid = torch.ones(args.batch_size, lifter.frames, dtype=torch.bool, device=device)

    def step():
        centre, seqs = lifter(x)
        loss, _ = lifting_loss(centre, seqs, y, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_rate = _rate(step, args.batch_size, sync=sync)
    poses = rng.normal(0, 300, (20000, 17, 3))
    pmpjpe_rate = _rate(lambda: p_mpjpe(poses + rng.normal(0, 30, poses.shape), poses), len(poses))
    result = {
        "preset": args.preset,
        "frames": lifter.frames,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "device": str(device),
        "eval_batch": args.eval_batch or centre_batch_size(lifter.frames, cfg.channels * (2 if bf16 else 4)),
        "eval_frames_per_s": round(eval_rate, 1),
        "eval_seq2seq_frames_per_s": round(seq2seq_rate, 1),
        "eval_flops_per_window": window_flops,
        "eval_attention_flops_per_window": attention_flops,
        "eval_flops_per_s": round(window_flops * eval_rate),
        "matmul_flops_per_s": round(matmul_rate),
        "eval_effective_share": round(window_flops * eval_rate / matmul_rate, 3),
        "train_windows_per_s": round(train_rate, 1),
        "p_mpjpe_poses_per_s": round(pmpjpe_rate),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
