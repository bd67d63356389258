"""One table of the field's lifters: the same finetuning recipe for every backbone, evaluated on Human3.6M.

    python -m experiments.compare --store STORE --shards SHARDS --config h36m-semi --out runs/compare \\
        [--backbones mpm videopose3d poseformer simplebaseline dstformer] [--frames 27] [--mpm-init CKPT] \\
        [--refine] [--set KEY=VALUE ...] [--backbone-set NAME:KEY=VALUE ...] [--seeds N] [--eval-subjects S11] \\
        [--budget 10m [--probe-steps 20]]

Per backbone it runs ``python -m finetune --backbone NAME --config C --out OUT/NAME --resume ...`` (the
runner, seeds and resumption of :mod:`experiments.ablate`): the config's steps, batch, rate and schedule, the
same data and loss, each backbone from scratch at its released size (``--backbone-set NAME:model.size=lite``
and the like change one backbone only; ``--set`` changes all), MPM from the pretrained network ``--mpm-init``
when given. ``--frames N`` gives every temporal backbone windows of N frames (SimpleBaseline3D lifts one frame);
without it each takes its released length (MPM its preset's or ``--mpm-init``'s). ``--refine`` adds MPM's refine
stage (:mod:`finetune.refine`) as the row ``mpm+refine``: ``python -m finetune --refine OUT/mpm/lifter.pt``
with the same recipe at ``--refine-lr`` (1e-4, the released rate). A backbone whose ``results.json`` exists is
not trained again, so a rerun finishes only what is missing.

Equal wall time (``--budget``, e.g. ``10m``): each backbone trains for about that long instead of the recipe's
steps. A probe (``--probe-steps`` steps of the row's own command, no evaluation, in ``OUT/probe/NAME``) measures
its optimizer steps per second R (:func:`step_rate`: data loading included, the first step's warm-up excluded);
the row then trains ``S = floor(budget x R)`` steps with the recipe's schedule stretched to them (:func:`budget_flags`:
the learning-rate decay period scaled by S over the recipe's steps, so the rate ends at the same fraction of its
start). Steps, not a clock, end the run, so a rerun repeats it. The table's ``training (min)`` column is the
wall time each row's training took. ``--refine`` is refused with it (MPM would get two stages' time).

Outputs in ``--out``: ``results.json``, ``results.md`` and ``comparison.png`` (MPJPE against FLOPs per frame).
Per row: backbone, size, frames, parameters (the finetuned lifter's, all of them), FLOPs per output frame
(:func:`flops_per_frame`: torch's ``FlopCounterMode`` on one window of the lifter's evaluation predictor,
divided by the frames it outputs), training samples/s (:func:`training_rate`, from ``metrics.jsonl``), MPJPE
and P-MPJPE (mm, Human3.6M test split, mean over actions; mean ± sd over seeds) and the evaluation protocol.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from experiments.ablate import (  # noqa: E402
    Runner,
    _mm,
    add_run_arguments,
    evaluation_clause,
    finetune_common,
    finetune_seeds,
    parse_budget,
    run_command,
    seed_count,
    seed_folder,
    stage_command,
    supervision,
)
from finetune.checkpoint import load_lifter  # noqa: E402
from finetune.config import NETWORK_FIELDS, FinetuneConfig, load_config  # noqa: E402
from finetune.model import flop_counter  # noqa: E402
from finetune.refine import refine_centre  # noqa: E402
from ingest.atomic import atomic_path, write_json, write_text  # noqa: E402
from ingest.cli import user_errors  # noqa: E402
from ingest.store import MotionStore  # noqa: E402
from pretrain import backbones  # noqa: E402
from pretrain.model import PRESETS, preset  # noqa: E402
from shards.manifest import load_manifest  # noqa: E402
from training.runlog import read_metrics  # noqa: E402

BACKBONES = ("mpm", *backbones.NAMES)
SINGLE_FRAME = ("simplebaseline",)  # lifts one frame: --frames 1 whatever --frames or the config says
REFINED = "mpm+refine"  # the refine stage's row


@torch.no_grad()
def flops_per_frame(lifter: torch.nn.Module) -> float:
    """FLOPs per output frame of ``lifter`` (a finetuned lifter, :func:`finetune.checkpoint.load_lifter`) as its own
    protocol predicts: torch's ``FlopCounterMode`` (:func:`finetune.model.flop_counter`, which also counts the
    CPU attention kernel) over one window (1, T, J, ``in_features``) of its evaluation predictor, in
    evaluation mode, divided by the frames that call outputs: ``predict_centre`` (one frame) for the
    centre-frame protocol, ``predict_clip`` (T frames) for sequence to sequence. A refine head adds its cost on
    one frame (:func:`finetune.refine.refine_centre`). A FLOP is a multiply or an add (a multiply-add is 2)."""
    lifter = lifter.eval()
    window = torch.randn(
        1, lifter.frames, lifter.joints, lifter.in_features, generator=torch.Generator().manual_seed(0)
    )
    with flop_counter() as counter:
        if lifter.protocol == "centre":
            out, frames = lifter.predict_centre(window), 1
        else:
            out, frames = lifter.predict_clip(window)[:, lifter.frames // 2], lifter.frames
    total = counter.get_total_flops() / frames
    if lifter.refiner is not None:
        camera = torch.tensor([[2.3, 2.3, 0.0, 0.0]])
        with flop_counter() as counter:
            refine_centre(lifter.refiner, out, window[:, lifter.frames // 2, :, :2], torch.tensor([5.0]), camera)
        total += counter.get_total_flops()
    return float(total)


def training_rate(folder: Path) -> float:
    """Training samples/s of a finetuning run: the median of ``samples_per_s`` over the records of
    ``folder/metrics.jsonl`` after the first (whose interval includes the first step's warm-up; the only one
    when there is one). The loop's rate: windows over wall time between records, data loading included.

    Raises:
        FileNotFoundError: no metrics.jsonl. ValueError: no record in it (naming the file).
    """
    path = Path(folder) / "metrics.jsonl"
    records = read_metrics(path)
    if not records:
        raise ValueError(f"{path}: no training record")
    return statistics.median(r["samples_per_s"] for r in (records[1:] or records))


def step_rate(folder: Path) -> float:
    """Optimizer steps per second of a run in ``folder``: the median over consecutive ``metrics.jsonl`` records of
    steps over seconds between them (the first record's interval, which holds the first step's warm-up, is never
    one of them; data loading is included).

    Raises:
        FileNotFoundError: no metrics.jsonl. ValueError: fewer than two records (naming the file).
    """
    path = Path(folder) / "metrics.jsonl"
    records = read_metrics(path)
    rates = [
        (b["step"] - a["step"]) / (b["seconds"] - a["seconds"])
        for a, b in itertools.pairwise(records)
        if b["step"] > a["step"] and b["seconds"] > a["seconds"]
    ]
    if not rates:
        raise ValueError(f"{path}: needs two training records to give a rate, has {len(records)}")
    return statistics.median(rates)


def budget_flags(cfg: FinetuneConfig, steps: int) -> list[str]:
    """``python -m finetune`` flags that train ``steps`` optimizer steps on the schedule of ``cfg`` stretched to
    them: ``train.max_steps``, ``train.decay_every``, the
    recipe's decay period (``train.decay_every``, else its epoch, ``data.steps_per_epoch``) times ``steps`` over
    its steps (``train.max_steps``, else ``train.epochs`` epochs), at least 1, and with ``data.steps_per_epoch``
    the ``train.epochs`` that hold them (epochs of one pass over the data, the recipe's, are not counted here:
    :func:`compare` warns when they end a row early).

    Raises:
        ValueError: the recipe's schedule is not in steps (epochs of one pass over the data, no
            ``data.steps_per_epoch`` and no ``train.decay_every``).
    """
    period = cfg.train.decay_every or cfg.data.steps_per_epoch
    if period is None:
        raise ValueError(
            "--budget stretches the recipe's schedule, which needs it in steps: set train.decay_every or "
            "data.steps_per_epoch (its epochs are passes over the data)"
        )
    recipe = cfg.train.max_steps or cfg.train.epochs * cfg.data.steps_per_epoch
    sets = [f"train.max_steps={steps}", f"train.decay_every={max(1, round(period * steps / recipe))}"]
    if cfg.data.steps_per_epoch:
        sets.append(f"train.epochs={max(cfg.train.epochs, math.ceil(steps / cfg.data.steps_per_epoch))}")
    return [a for item in sets for a in ("--set", item)]


def probe(run: Runner, args: argparse.Namespace, name: str, start: list[str], common: list[str]) -> float:
    """Steps per second of backbone ``name``'s training command (``start`` + ``common``) over ``--probe-steps``
    steps without evaluation, in ``OUT/probe/NAME`` (:func:`step_rate`); a finished probe is read, not rerun, and
    an unfinished one starts over (its interrupted records would mix two invocations' clocks)."""
    folder = Path(args.out) / "probe" / name
    metrics = folder / "metrics.jsonl"
    if not (metrics.exists() and any(r["step"] == args.probe_steps for r in read_metrics(metrics, torn_tail=True))):
        shutil.rmtree(folder, ignore_errors=True)
        sets = [f"train.max_steps={args.probe_steps}", f"train.log_every={max(1, args.probe_steps // 4)}"]
        flags = [*start, "--seed", "0", "--out", str(folder), *common, *(a for o in sets for a in ("--set", o))]
        run(stage_command(args.launcher, "finetune", [*flags, "--set", "evaluate=false"]))
    return step_rate(folder)


def size_name(config: dict, lifter: torch.nn.Module) -> str:
    """The size column: another backbone's released size and the network fields that override it
    (``full, channels=16``); for MPM its preset's name when the lifter's sizes are a preset's, else its channels
    and layers (``C64, 2+1 layers``), with "pretrained" when it started from one."""
    model = config["model"]
    if model["backbone"] != "mpm":
        return ", ".join([model["size"], *(f"{k}={model[k]}" for k in NETWORK_FIELDS if model.get(k) is not None)])
    cfg = lifter.cfg
    named = [p for p in PRESETS if preset(p, joints=cfg.joints, frames=cfg.frames) == cfg]
    size = named[0] if named else f"C{cfg.channels}, {cfg.layers}+{cfg.decoder_layers} layers"
    return f"{size}, pretrained" if model.get("init") else size


def measure(name: str, folder: Path, finetuned: dict, seeds: int) -> dict:
    """A table row from a backbone's finetuned runs (``finetuned``: :func:`experiments.ablate.finetune_seeds`'s
    summary): the network from ``folder/lifter.pt``, the rate averaged over the seeds' runs; the steps, learning
    rate and training seconds (the loop's wall time, its last invocation's) of seed 0's run."""
    lifter, meta = load_lifter(folder)
    results = json.loads((folder / "results.json").read_text())
    row = {
        "backbone": name,
        "size": size_name(meta["config"], lifter),
        "frames": lifter.frames,
        "parameters": sum(p.numel() for p in lifter.parameters()),
        "flops_per_frame": flops_per_frame(lifter),
        "samples_per_s": statistics.fmean(training_rate(seed_folder(folder, s)) for s in range(seeds)),
        "protocol": results["protocol"],
        "steps": results["train"]["steps"],
        "lr": results["train"]["config"]["train"]["lr"],
        "train_s": results["train"]["train_seconds"],
        "folder": str(folder),
        **finetuned,
    }
    if results.get("refine"):
        row["unrefined"] = {k: results["h36m"]["unrefined"]["average"][k] for k in ("mpjpe", "p_mpjpe")}
    return row


def _count(value: float) -> str:
    """12.3M, 4.5G, 830k."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def write_table(path: Path, rows: list[dict], header: str) -> str:
    """The markdown table after ``header``; returns its text."""
    lines = [
        header,
        "",
        "| backbone | size | frames | parameters | FLOPs per frame | training samples/s | steps | lr "
        "| training (min) | MPJPE (mm) | P-MPJPE (mm) | protocol |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['size']} | {r['frames']} | {r['parameters']:,} | {_count(r['flops_per_frame'])} "
            f"| {r['samples_per_s']:.0f} | {r['steps']} | {r['lr']:g} | {r['train_s'] / 60:.1f} | {_mm(r)} "
            f"| {r['p_mpjpe']:.1f} | {r['protocol']} |"
        )
    for r in rows:
        if "unrefined" in r:
            lines.append(
                f"\n{r['backbone']}: the same lifter unrefined scores {r['unrefined']['mpjpe']:.1f} / "
                f"{r['unrefined']['p_mpjpe']:.1f} mm (MPJPE / P-MPJPE, seed 0); the refine head uses the true "
                "pelvis depth, as released."
            )
    text = "\n".join(lines) + "\n"
    write_text(path, text)
    return text


def plot(path: Path, rows: list[dict]) -> None:
    """MPJPE against FLOPs per frame (log axis), one labelled point per row, error bars over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.errorbar(r["flops_per_frame"], r["mpjpe"], yerr=r.get("mpjpe_std", 0.0), fmt="o", capsize=3)
        ax.annotate(r["backbone"], (r["flops_per_frame"], r["mpjpe"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per output frame (log scale)")
    ax.set_ylabel("Human3.6M MPJPE (mm)")
    ax.set_title("Lifters under one finetuning recipe")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def backbone_overrides(args: argparse.Namespace) -> dict[str, list[str]]:
    """``--backbone-set NAME:KEY=VALUE`` by backbone name.

    Raises:
        ValueError: a malformed item, or a name not among ``--backbones``.
    """
    out: dict[str, list[str]] = {name: [] for name in args.backbones}
    for item in args.backbone_overrides:
        name, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise ValueError(f"--backbone-set {item!r}: expected NAME:KEY=VALUE, e.g. dstformer:model.size=lite")
        if name not in out:
            raise ValueError(f"--backbone-set {item!r}: {name!r} is not among --backbones {args.backbones}")
        out[name].append(override)
    return out


def backbone_flags(args: argparse.Namespace, name: str, overrides: list[str]) -> list[str]:
    """The ``python -m finetune`` flags that pick ``name``: the backbone, ``--frames`` (temporal backbones; 1 for
    a single-frame one, whatever window the config gives), MPM's ``--init``, then its own ``--set`` overrides."""
    flags = ["--backbone", name]
    if name in SINGLE_FRAME:
        flags += ["--frames", "1"]
    elif args.frames:
        flags += ["--frames", str(args.frames)]
    if name == "mpm" and args.mpm_init:
        flags += ["--init", args.mpm_init]
    return flags + [a for o in overrides for a in ("--set", o)]


def row_config(args: argparse.Namespace, name: str, overrides: list[str]):
    """The finetuning config the row's command builds (:func:`finetune.config.load_config`; checks it, and that
    another backbone can be built at its sizes)."""
    extra = [f"model.backbone={name}"]
    if name in SINGLE_FRAME:
        extra.append("model.frames=1")
    elif args.frames:
        extra.append(f"model.frames={args.frames}")
    if name == "mpm" and args.mpm_init:
        extra.append(f"model.init={args.mpm_init}")
    cfg = load_config(args.config, [*args.overrides, *extra, *overrides])
    if name != "mpm":
        cfg.model.backbone_network()
    return cfg


def check(args: argparse.Namespace) -> None:
    """What the comparison needs, checked before any run: known backbones, the store's Human3.6M, the shard
    manifest, ``--mpm-init``, ``--refine`` with MPM among the backbones and without ``--budget``, and every row's
    finetuning config (with ``--budget``, a schedule in steps).

    Raises:
        ValueError / FileNotFoundError / KeyError: naming the option, folder or file.
    """
    unknown = [b for b in args.backbones if b not in BACKBONES]
    if unknown:
        raise ValueError(f"--backbones: unknown {unknown}; known: {list(BACKBONES)}")
    if len(set(args.backbones)) != len(args.backbones):
        raise ValueError(f"--backbones names one twice: {args.backbones}")
    if "h36m" not in MotionStore.open(args.store):
        raise FileNotFoundError(f"--store {args.store}: no Human3.6M in it (python -m ingest h36m ...)")
    load_manifest(args.shards)
    if args.mpm_init and not Path(args.mpm_init).exists():
        raise FileNotFoundError(f"--mpm-init {args.mpm_init}: no such pretrained network")
    if args.refine and "mpm" not in args.backbones:
        raise ValueError("--refine refines MPM's finetuned lifter: name mpm among --backbones")
    if args.budget is not None:
        parse_budget(args.budget)
        if args.refine:
            raise ValueError(
                "--budget gives each backbone one training time; --refine would add a second stage to MPM's"
            )
    for name, overrides in backbone_overrides(args).items():
        cfg = row_config(args, name, overrides)
        if args.budget is not None:
            budget_flags(cfg, 1)
    if args.refine:  # the refine row's config: the recipe with model.refine (its file is written later)
        load_config(args.config, [*args.overrides, f"model.refine={Path(args.out) / 'mpm' / 'lifter.pt'}"])


def header(args: argparse.Namespace) -> str:
    """What the table compares, in one paragraph."""
    ft = load_config(args.config, args.overrides)
    labelled, length = supervision(ft)
    epoch = f"epoch ({ft.data.steps_per_epoch} steps)" if ft.data.steps_per_epoch else "epoch"
    every = f"{ft.train.decay_every} steps" if ft.train.decay_every else epoch
    schedule = f"lr {ft.train.lr:g} decayed by {ft.train.lr_decay:g} every {every}"
    mpm = f"MPM from {args.mpm_init}" if args.mpm_init else "every backbone, MPM too, from scratch"
    refine = (
        f"; mpm+refine: MPM's refine stage after it, the same recipe at lr {args.refine_lr:g}" if args.refine else ""
    )
    frames = f"{args.frames}-frame windows" if args.frames else "each backbone's released window"
    if args.budget:
        length = (
            f"equal wall time, {args.budget} of training per backbone (its steps what a {args.probe_steps}-step "
            f"probe of its rate affords, instead of the recipe's {length}; the decay period scaled with them)"
        )
    changes = "; ".join(f"{name}: {', '.join(sets)}" for name, sets in backbone_overrides(args).items() if sets)
    changes = f" Per backbone: {changes}." if changes else ""
    return (
        f"Every lifter finetuned with one recipe ({args.config or 'the default config'}): {labelled}, {length} of "
        f"batch {ft.data.batch_size}, {schedule}; {frames}; {mpm}{refine}.{changes} "
        f"{evaluation_clause(ft, args.eval_subjects)}; "
        f"{args.seeds} finetuning seed{'s' if args.seeds > 1 else ''}. FLOPs: per output frame, one window, torch "
        "FlopCounterMode; samples/s: the training loop's median."
    )


def compare(args: argparse.Namespace, run: Runner = run_command) -> dict:
    """Run (or finish) every backbone's finetuning, then write the results; returns results.json's dict. Raises
    what :func:`check` raises, before any run."""
    check(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = finetune_common(args, args.config, args.overrides)
    rows = []
    for name, overrides in backbone_overrides(args).items():
        folder = out / name
        flags, steps = backbone_flags(args, name, overrides), None
        if args.budget and not all((seed_folder(folder, s) / "results.json").exists() for s in range(args.seeds)):
            steps = max(1, math.floor(parse_budget(args.budget) * probe(run, args, name, flags, common)))
            flags += budget_flags(row_config(args, name, overrides), steps)
        finetuned = finetune_seeds(run, args, flags, folder, common)
        rows.append(measure(name, folder, finetuned, args.seeds))
        if steps is not None and rows[-1]["steps"] < steps:
            print(f"warning: {name} trained {rows[-1]['steps']} of the budget's {steps} steps: train.epochs ended it")
    if args.refine:

        def start(seed: int) -> list[str]:  # each seed's MPM lifter
            return ["--backbone", "mpm", "--refine", str(seed_folder(out / "mpm", seed) / "lifter.pt")]

        folder = out / "mpm-refine"
        finetuned = finetune_seeds(run, args, start, folder, [*common, "--set", f"train.lr={args.refine_lr}"])
        refined = measure(REFINED, folder, finetuned, args.seeds)
        refined["size"] = next(r["size"] for r in rows if r["backbone"] == "mpm")  # the refined lifter's
        rows.append(refined)
    results = {
        "rows": rows,
        "regime": header(args),
        "config": args.config,
        "unit": "mm",
        "flops": "per output frame: FlopCounterMode over one window of the evaluation predictor / its output frames",
        "samples_per_s": "median over metrics.jsonl records after the first, mean over seeds",
        "seeds": seed_count(rows),
    }
    write_json(out / "results.json", results)
    table = write_table(out / "results.md", rows, results["regime"])
    plot(out / "comparison.png", rows)
    print(table)
    print(f"results: {out / 'results.json'}\nplot: {out / 'comparison.png'}")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    head, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(
        prog="python -m experiments.compare",
        description=head,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p, "every backbone")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), help=f"lifters to compare (default {BACKBONES})")
    p.add_argument("--config", help="finetuning config file or shipped name (python -m finetune --config)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="finetuning config override for every backbone, repeatable",
    )
    p.add_argument(
        "--backbone-set",
        dest="backbone_overrides",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="finetuning config override for one backbone, e.g. dstformer:model.size=lite, repeatable",
    )
    p.add_argument("--frames", type=int, help="window length of every temporal backbone (default: each one's own)")
    p.add_argument("--mpm-init", help="MPM's pretrained network (pretraining export or checkpoint folder)")
    p.add_argument("--refine", action="store_true", help="add MPM's refine stage as the row mpm+refine")
    p.add_argument("--refine-lr", type=float, default=1e-4, help="the refine stage's rate (default 1e-4, as released)")
    p.add_argument(
        "--budget", help="equal wall time: each backbone's training time, e.g. 10m, 600s, 1h (a probe sets its steps)"
    )
    p.add_argument(
        "--probe-steps", type=int, default=20, help="steps of the probe that measures a backbone's rate (default 20)"
    )
    p.add_argument("--out", default="runs/compare", help="results folder (default: runs/compare)")
    args = p.parse_args(argv)
    if args.frames is not None and args.frames < 1:
        p.error(f"--frames must be >= 1, got {args.frames}")
    if args.probe_steps < 2:
        p.error(f"--probe-steps must be >= 2 (a rate needs two records), got {args.probe_steps}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """``python -m experiments.compare ...``: a mistake in the arguments is one line and exit status 2, before any
    run."""
    args = parse_args(argv)
    with user_errors("python -m experiments.compare"):
        check(args)
    return compare(args)


if __name__ == "__main__":
    main()
