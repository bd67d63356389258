"""``python -m pretrain.bench``: pretraining throughput of full training steps on the current device.

A step is what the trainer runs: mask drawing, forward of the 2D and 3D tasks, backward, gradient
clipping and the AdamW update, through the same DeepSpeed engine (one process), on a synthetic batch in
the streaming batch contract (the loader has its own bench, ``shards.bench``). Prints one JSON line:
``device``, ``dtype``, ``batch_size``, ``samples_per_s`` (batch size over the median step time),
``flops_per_sample`` (matrix products and attention of one training step per sample, forward and backward,
counted by ``torch.utils.flop_counter.FlopCounterMode``), ``achieved_flops_per_s``, ``peak_memory_bytes`` (the
largest GPU memory allocated by torch in the measurement; on CPU the process's peak resident memory) and
``device_memory_bytes`` (the GPU's memory, or the machine's RAM).

``--dtype``: ``fp32`` (``cpu_fp32.json``: plain fp32, ZeRO off, also valid on a GPU), ``bf16``
(``gpu_bf16_zero1.json`` on a GPU, ``cpu_bf16.json`` autocast on CPU), or by default fp32 and, on a GPU, bf16 too.
The bf16 figures are prefixed ``bf16_``, with ``bf16_peak_flops_per_s`` (the device's dense bf16 peak: the
``--peak-tflops`` given, else :data:`BF16_PEAK` by device name, else null) and ``bf16_fraction_of_peak``
(achieved over peak: the model FLOP utilisation).

``--backbone NAME`` (:mod:`pretrain.backbones`, at ``--size``) measures that network's training step instead:
the supervised lifting step it trains with here (forward of the 2D window, MPJPE against the 3D of its output
frames, backward, clipping, AdamW), MPM's masked objective being MPM's own; ``--frames`` defaults to the
size's window.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from pretrain import backbones
from pretrain.masking import MaskConfig
from pretrain.model import MPM, PRESETS, preset
from pretrain.objective import ObjectiveConfig, pretrain_loss
from training.engine import (
    DS_CONFIG_DIR,
    MONITORS,
    build_engine,
    compute_dtype,
    ensure_distributed,
    load_ds_config,
    make_optimizer,
    make_scheduler,
)

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets (without sparsity), matched as a substring
# of torch.cuda.get_device_name(): the SXM parts' figures (a PCIe / NVL card is slower: give --peak-tflops).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}
# DeepSpeed config (training/deepspeed/) of each --dtype, on CPU and on a GPU
DS_CONFIGS = {"fp32": ("cpu_fp32.json", "cpu_fp32.json"), "bf16": ("cpu_bf16.json", "gpu_bf16_zero1.json")}


def synthetic_batch(batch: int, frames: int, joints: int, device: torch.device, seed: int = 0) -> dict:
    """Random poses in the batch contract (``pose2d``/``pose3d`` (B, T, J, 3), all frames valid)."""
    g = torch.Generator().manual_seed(seed)
    out = {
        "pose2d": torch.rand(batch, frames, joints, 3, generator=g) * 2 - 1,
        "pose3d": torch.randn(batch, frames, joints, 3, generator=g) * 0.3,
        "valid2d": torch.ones(batch, frames, dtype=torch.bool),
        "valid3d": torch.ones(batch, frames, dtype=torch.bool),
        "dataset": torch.zeros(batch, dtype=torch.int64),
    }
    out["pose3d"][:, :, 0] = 0.0
    return {k: v.to(device) for k, v in out.items()}


def lifting_step_loss(engine, batch: dict, dtype: torch.dtype) -> torch.Tensor:
    """MPJPE (metres) of a backbone's lift of ``batch``'s 2D against the 3D of the frames it outputs: the centre
    frames of its windows (``protocol`` centre) or every frame (seq2seq); :mod:`pretrain.backbones.base`."""
    net = engine.module
    x = batch["pose2d"][..., : net.in_features].to(dtype)
    out = engine(x)
    if net.protocol == "centre":
        first = net.frames // 2
        target = batch["pose3d"][:, first : first + out.shape[1]]
    else:
        target = batch["pose3d"]
    return (out.float() - target).norm(dim=-1).mean()


def measure(args: argparse.Namespace, ds_file: str) -> dict:
    """Median training-step rate and FLOPs of the ``args`` model under one DeepSpeed config."""
    torch.manual_seed(0)
    if args.backbone == "mpm":
        model = MPM(preset(args.preset, joints=args.joints, frames=args.frames or 243))
        joints, frames = model.cfg.joints, model.cfg.frames
    else:
        model = backbones.build(args.backbone, args.size, joints=args.joints, frames=args.frames)
        joints, frames = model.joints, model.frames
    optimizer = make_optimizer(model, 1e-4, 0.01, (0.9, 0.999))
    scheduler = make_scheduler(optimizer, 10, 1000, 0.01)
    ds = load_ds_config(DS_CONFIG_DIR / ds_file, micro_batch=args.batch_size, grad_accum=1, grad_clip=1.0, world_size=1)
    ds = {k: v for k, v in ds.items() if k not in MONITORS}  # a bench writes no TensorBoard events
    engine = build_engine(model, optimizer, scheduler, ds)
    dtype, device = compute_dtype(engine), engine.device
    batch = synthetic_batch(args.batch_size, frames, joints, device)
    gen = torch.Generator().manual_seed(0)
    mask, objective = MaskConfig(), replace(ObjectiveConfig(), tasks=args.tasks)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        if args.backbone == "mpm":
            loss, _ = pretrain_loss(engine, batch, mask, objective, gen, dtype)
        else:
            loss = lifting_step_loss(engine, batch, dtype)
        engine.backward(loss)
        engine.step()

    engine.train()
    for _ in range(args.warmup):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    times = []
    for _ in range(args.steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    rate = args.batch_size / statistics.median(times)
    flops = counter.get_total_flops() / args.batch_size
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "samples_per_s": rate,
        "flops_per_sample": flops,
        "achieved_flops_per_s": flops * rate,
        "step_s_min": min(times),
        "step_s_median": statistics.median(times),
        # ru_maxrss: KiB on Linux
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else resource.getrusage(0).ru_maxrss * 1024,
        "frames": frames,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m pretrain.bench", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mpm", choices=["mpm", *backbones.NAMES], help="the network (default MPM)")
    p.add_argument("--preset", default="mpm", choices=sorted(PRESETS), help="MPM's size (--backbone mpm)")
    p.add_argument("--size", default="full", help="another backbone's released size (full, or lite: dstformer)")
    p.add_argument("--joints", type=int, default=17)
    p.add_argument("--frames", type=int, help="window (default: 243 for MPM, the size's for another backbone)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tasks", default="both", choices=("both", "split"), help="objective.tasks")
    p.add_argument(
        "--dtype", choices=sorted(DS_CONFIGS), help="measure this one only (default: fp32, and bf16 on a GPU)"
    )
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, TFLOP/s (default: BF16_PEAK)")
    args = p.parse_args(argv)
    if args.backbone != "mpm" and args.size not in backbones.sizes(args.backbone):
        p.error(f"backbone {args.backbone} has no size {args.size!r}; its sizes: {backbones.sizes(args.backbone)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    ensure_distributed()
    cuda = torch.cuda.is_available()
    memory = (
        torch.cuda.get_device_properties(0).total_memory
        if cuda
        else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    )
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "batch_size": args.batch_size,
        "backbone": args.backbone,
        **({"preset": args.preset, "tasks": args.tasks} if args.backbone == "mpm" else {"size": args.size}),
        "joints": args.joints,
        "threads": torch.get_num_threads(),
        "device_memory_bytes": memory,
    }
    for dtype in [args.dtype] if args.dtype else ["fp32", "bf16"] if cuda else ["fp32"]:
        figures = measure(args, DS_CONFIGS[dtype][cuda])
        result["frames"] = figures.pop("frames")
        result |= figures if dtype == "fp32" else {f"bf16_{k}": v for k, v in figures.items() if k != "dtype"}
    if "bf16_samples_per_s" in result:
        table = next((v for k, v in BF16_PEAK.items() if k in result["device"]), None)
        peak = args.peak_tflops * 1e12 if args.peak_tflops else table
        result["bf16_peak_flops_per_s"] = peak
        result["bf16_fraction_of_peak"] = result["bf16_achieved_flops_per_s"] / peak if peak else None
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
