"""Data-scaling ablation (MPM appendix E): pretrain one model per data mixture, finetune and evaluate each
the same way, and compare with finetuning from scratch.

    python -m experiments.ablate --shards SHARDS --store STORE --scales small base large --out runs/ablate \\
        [--config C] [--set section.field=value ...] [--steps N | --epochs E] \\
        [--finetune-config F] [--finetune-set section.field=value ...]

The runner sits above both stages (``finetune -> pretrain``). Per scale it calls the stages' own commands,
with config files and ``--set`` overrides only, so every step can be rerun by hand:
``python -m pretrain --mixture SCALE --out OUT/SCALE/pretrain --resume ...`` then
``python -m finetune --init OUT/SCALE/pretrain/pretrained.pt --out OUT/SCALE/finetune --resume ...``, and
``python -m finetune`` without ``--init`` for the baseline (``OUT/baseline``); ``--pretrained-from DIR``
takes the pretrained networks of an earlier ablation (``DIR/SCALE/pretrain``) to finetune them in another
regime without pretraining again. ``--launcher "deepspeed
--num_gpus 8"`` runs the stages under the DeepSpeed launcher instead of one Python process. A stage whose
output exists is not redone (``pretrained.pt``, ``results.json``), and an interrupted pretraining resumes
from its last checkpoint, so rerunning after an interruption finishes only what is unfinished.

Compute is matched by default: every scale pretrains for the same number of steps. ``--epochs E`` gives
every scale E passes over its own windows instead. ``--lift`` also scores each pretrained network's own
2D-to-3D lifting before any finetuning (``python -m finetune.evaluate --lift --bn-shards SHARDS``: the
lift path's batch-norm statistics re-estimated on complete 2D training windows). ``--probe`` adds the
frozen-feature probe (finetuning with the shared layers frozen, from the last scale's weights and from random
weights: a representation that learned something beats random features). Outputs in ``--out``:
``results.json``, ``results.md`` (scale, datasets, pretraining windows, MPJPE, P-MPJPE on the Human3.6M test
split, the probes; with ``--seeds N`` every finetuning runs N times and the MPJPE is mean ± sd) and
``data_scaling.png`` (MPJPE against pretraining windows, log axis, error bars over seeds, the baseline and
the probes as lines).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from finetune.config import NETWORK_FIELDS, FinetuneConfig  # noqa: E402
from finetune.config import load_config as load_finetune_config  # noqa: E402
from finetune.evaluate import read_h36m_summary  # noqa: E402
from ingest.atomic import atomic_path, write_json, write_text  # noqa: E402
from ingest.cli import user_errors  # noqa: E402
from ingest.store import MotionStore  # noqa: E402
from pretrain.config import load_config  # noqa: E402
from shards.manifest import load_manifest, mixture_windows  # noqa: E402
from shards.mixtures import resolve  # noqa: E402

Runner = Callable[[list[str]], None]


def run_command(cmd: list[str]) -> None:
    """Run one stage, echoing the command; raises CalledProcessError when it fails."""
    print("+ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def parse_budget(text: str) -> float:
    """Seconds of ``20m``, ``1200s``, ``1.5h`` or a bare number of seconds; raises ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--budget {text!r}: give a positive duration such as 20m, 1200s, 1h or 600")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def stage_command(launcher: str | None, module: str, args: list[str]) -> list[str]:
    """``python -m MODULE ARGS``, or ``LAUNCHER --module MODULE ARGS`` (e.g. the deepspeed launcher)."""
    if launcher:
        return [*shlex.split(launcher), "--module", module, *args]
    return [sys.executable, "-m", module, *args]


def scale_windows(shards: str, scale: str, clip_len: int, stride: int) -> dict[str, int]:
    """Training windows per dataset of mixture ``scale`` at ``clip_len`` / ``stride``, from the manifest."""
    return mixture_windows(load_manifest(shards), resolve(scale), "train", clip_len, stride)


def pretrain_steps(windows: int, epochs: float | None, steps: int, batch_size: int, world_size: int) -> int:
    """``steps`` (compute matched), or enough steps for ``epochs`` passes over ``windows``."""
    if epochs is None:
        return steps
    return max(1, math.ceil(epochs * windows / (batch_size * world_size)))


def stand_in_warning(store: str) -> str | None:
    """A warning when the store's AMASS sequences were made with the stand-in body model."""
    motion_store = MotionStore.open(store)
    if "amass" not in motion_store:
        return None
    if any(m.get("stand_in_body_model") for m in motion_store["amass"].metas):
        return (
            "AMASS in this store was converted with the STAND-IN body model (no real SMPL-H/SMPL-X "
            "model was given): its joints are not those of AMASS subjects, so the 'large' scale does not "
            "measure what real AMASS data buys."
        )
    return None


def read_result(folder: Path) -> dict:
    """MPJPE and P-MPJPE (mm, Human3.6M test split, averaged over actions) and the MPJPE per subject of a
    finetune (or ``--lift`` evaluation) folder (:func:`finetune.evaluate.read_h36m_summary`)."""
    return asdict(read_h36m_summary(folder))


def scratch_network(cfg) -> list[str]:
    """``python -m finetune`` flags of a from-scratch lifter that is the pretrained networks' twin: the
    pretraining config's preset, joints and frames, and every size of its ``model`` section (``channels``,
    ``dropout``, ...: :data:`finetune.config.NETWORK_FIELDS`), so that the baseline and the random probe differ
    from the pretrained lifters in their weights alone."""
    m = cfg.model
    flags = ["--preset", cfg.preset, "--joints", str(m.joints), "--frames", str(m.frames)]
    for key in NETWORK_FIELDS:
        flags += ["--set", f"model.{key}={getattr(m, key)}"]
    return flags


def seed_folder(folder: Path, seed: int) -> Path:
    """The run folder of finetuning seed ``seed``: ``folder`` for seed 0, ``folder-seedK`` for seed K."""
    return folder if seed == 0 else folder.with_name(f"{folder.name}-seed{seed}")


def finetune_seeds(
    run: Runner,
    args: argparse.Namespace,
    init: list[str] | Callable[[int], list[str]],
    folder: Path,
    common: list[str],
) -> dict:
    """Finetune ``args.seeds`` times (``--seed 0 .. N-1``, in :func:`seed_folder` of ``folder``), each run only
    when its ``results.json`` is missing, and return the mean :func:`read_result` with ``mpjpe_std`` (sample
    standard deviation over seeds, 0 for one seed) and every run under ``runs``. ``init``: the flags that start
    each run, or a function of the seed giving them (e.g. each seed's own finetuned lifter)."""
    runs = []
    for seed in range(args.seeds):
        target = seed_folder(folder, seed)
        if not (target / "results.json").exists():
            start = init(seed) if callable(init) else init
            run(
                stage_command(
                    args.launcher, "finetune", [*start, "--seed", str(seed), "--out", str(target), "--resume", *common]
                )
            )
        runs.append({"seed": seed, **read_result(target)})
    mpjpe = [r["mpjpe"] for r in runs]
    subjects = {s: statistics.fmean(r["subjects"][s] for r in runs) for s in runs[0]["subjects"]}
    return {
        "mpjpe": statistics.fmean(mpjpe),
        "p_mpjpe": statistics.fmean(r["p_mpjpe"] for r in runs),
        "mpjpe_std": statistics.stdev(mpjpe) if len(runs) > 1 else 0.0,
        "subjects": subjects,
        "runs": runs,
    }


def seed_count(rows: list[dict]) -> int:
    """Finetuning seeds behind the rows (1 for rows without ``runs``, or none)."""
    return max((len(r.get("runs", ())) for r in rows), default=1)


def _mm(r: dict) -> str:
    """MPJPE cell: the mean, with the spread over seeds when there are several."""
    return f"{r['mpjpe']:.1f} ± {r['mpjpe_std']:.1f}" if seed_count([r]) > 1 else f"{r['mpjpe']:.1f}"


def supervision(ft: FinetuneConfig) -> tuple[str, str]:
    """(what finetuning is labelled with, its length) of a finetuning config, e.g. ("the 2D-3D pairs of S1
    only", "800 steps")."""
    labelled = (
        "the 2D-3D pairs of " + ", ".join(ft.data.subjects) + " only"
        if ft.data.subjects
        else "the 2D-3D pairs of every Human3.6M training subject"
    )
    n, unit = (ft.train.max_steps, "step") if ft.train.max_steps else (ft.train.epochs, "epoch")
    return labelled, f"{n} {unit}{'s' if n != 1 else ''}"


def evaluation_clause(ft: FinetuneConfig, eval_subjects: list[str] | None) -> str:
    """The test clause of a table's header: subjects, and the protocol (``eval.protocol``, or each lifter's own)."""
    test = ", ".join(eval_subjects) if eval_subjects else "the store's test subjects"
    protocol = f"{ft.eval.protocol} protocol" if ft.eval.protocol else "each lifter's own protocol"
    return f"Test: {test}, every frame and camera, {protocol}"


def regime(ft: FinetuneConfig, eval_subjects: list[str] | None, pretrain_steps: int | None, seeds: int) -> str:
    """One sentence naming what the table compares: the supervision of finetuning (its labelled subjects),
    its length, batch and centre-frame head, the pretraining steps, the test subjects and protocol, seeds."""
    labelled, length = supervision(ft)
    pre = f"; every scale pretrained {pretrain_steps} steps" if pretrain_steps else ""
    return (
        f"Finetuning sees {labelled} ({length}, batch {ft.data.batch_size}, centre head "
        f"{ft.model.centre_head}){pre}. {evaluation_clause(ft, eval_subjects)}; "
        f"{seeds} finetuning seed{'s' if seeds > 1 else ''}."
    )


def write_table(
    path: Path, rows: list[dict], baseline: dict | None, probes: dict | None = None, header: str = ""
) -> str:
    """The markdown results table (and the frozen-feature probes, when run), after ``header`` (a sentence,
    e.g. :func:`regime`) when given; returns its text."""
    lines = [header, ""] if header else []
    lines += ["| scale | datasets | pretraining windows | MPJPE (mm) | P-MPJPE (mm) |", "|---|---|---:|---:|---:|"]
    for r in rows:
        datasets = ", ".join(f"{d} {w}" for d, w in r["windows_per_dataset"].items())
        lines.append(f"| {r['scale']} | {datasets} | {r['windows']} | {_mm(r)} | {r['p_mpjpe']:.1f} |")
    for r in rows:
        if "pretrained_lift" in r:
            lift = r["pretrained_lift"]
            lines.append(
                f"| {r['scale']}, pretrained network's own lifting, before finetuning | - | - | "
                f"{lift['mpjpe']:.1f} | {lift['p_mpjpe']:.1f} |"
            )
    if baseline:
        lines.append(f"| no pretraining | - | 0 | {_mm(baseline)} | {baseline['p_mpjpe']:.1f} |")
    for name, r in (probes or {}).items():
        start = "random weights" if name == "random" else f"{name} weights"
        lines.append(f"| probe: shared layers frozen, {start} | - | - | {r['mpjpe']:.1f} | {r['p_mpjpe']:.1f} |")
    text = "\n".join(lines) + "\n"
    write_text(path, text)
    return text


def _compact(value: float, _pos=None) -> str:
    """Axis label of a window count: 120k, 2.5M."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def _minor_label(value: float, _pos=None) -> str:
    """Minor-tick label of the log axis: 2x and 5x of a power of ten only, so labels never overlap."""
    lead = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return _compact(value) if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ""


def plot(path: Path, rows: list[dict], baseline: dict | None, probes: dict | None = None) -> None:
    """MPJPE against pretraining windows (log axis), one point per scale, the baseline and the frozen-feature
    probes as lines."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    xs, ys = [r["windows"] for r in rows], [r["mpjpe"] for r in rows]
    ax.errorbar(
        xs,
        ys,
        yerr=[r.get("mpjpe_std", 0.0) for r in rows],
        fmt="o-",
        color="tab:blue",
        capsize=3,
        label="pretrained, then finetuned" + (" (mean ± sd over seeds)" if seed_count(rows) > 1 else ""),
    )
    for r in rows:
        ax.annotate(r["scale"], (r["windows"], r["mpjpe"]), textcoords="offset points", xytext=(5, 5))
    if baseline:
        ax.axhline(baseline["mpjpe"], color="tab:red", linestyle="--", label="no pretraining")
        if baseline.get("mpjpe_std"):
            ax.axhspan(
                baseline["mpjpe"] - baseline["mpjpe_std"],
                baseline["mpjpe"] + baseline["mpjpe_std"],
                color="tab:red",
                alpha=0.12,
            )
    for (name, r), color in zip((probes or {}).items(), ("tab:green", "tab:gray"), strict=False):
        start = "random" if name == "random" else name
        ax.axhline(r["mpjpe"], color=color, linestyle=":", label=f"frozen shared layers, {start} weights")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
    ax.set_xlabel("pretraining windows (log scale)")
    ax.set_ylabel("Human3.6M MPJPE (mm)")
    ax.set_title("Data scaling of MPM pretraining")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def check(args: argparse.Namespace) -> None:
    """What the ablation will need, checked before any stage runs: the pretraining config, every scale's
    mixture against the shard manifest, the store's Human3.6M, and with ``--pretrained-from`` each scale's
    network there.

    Raises:
        ValueError / FileNotFoundError / KeyError: naming the scale, folder or file.
    """
    cfg = load_config(args.config, args.overrides)
    if "h36m" not in MotionStore.open(args.store):
        raise FileNotFoundError(f"--store {args.store}: no Human3.6M in it (python -m ingest h36m ...)")
    for scale in args.scales:
        scale_windows(args.shards, scale, cfg.clip_len, cfg.data.stride)
        pre = Path(args.pretrained_from or args.out) / scale / "pretrain" / "pretrained.pt"
        if args.pretrained_from and not pre.is_file():
            raise FileNotFoundError(
                f"{pre}: --pretrained-from {args.pretrained_from} holds no pretrained "
                f"network of scale {scale!r} (run that ablation first, or drop --pretrained-from)"
            )


def finetune_common(args: argparse.Namespace, config: str | None, overrides: list[str]) -> list[str]:
    """The ``python -m finetune`` flags every finetuning of an experiment shares: ``args``' store, shards and
    evaluation subjects (:func:`add_run_arguments`), the finetuning ``config`` and its ``--set`` ``overrides``."""
    subjects = ["--set", f"eval.subjects=[{', '.join(args.eval_subjects)}]"] if args.eval_subjects else []
    return [
        "--store",
        args.store,
        "--shards",
        args.shards,
        *(["--config", config] if config else []),
        *[a for o in overrides for a in ("--set", o)],
        *subjects,
    ]


def ablate(args: argparse.Namespace, run: Runner = run_command) -> dict:
    """Run (or finish) every scale and the baseline, then write the results; returns results.json's dict.
    Raises what :func:`check` raises, before any stage runs."""
    check(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, args.overrides)
    clip_len, batch_size = cfg.clip_len, cfg.data.batch_size
    common = finetune_common(args, args.finetune_config, args.finetune_overrides)
    rows = []
    for scale in args.scales:
        per_dataset = scale_windows(args.shards, scale, clip_len, cfg.data.stride)
        windows = sum(per_dataset.values())
        if windows == 0:
            print(f"scale {scale}: no training windows in {args.shards} (datasets {sorted(per_dataset)}); skipped")
            continue
        steps = pretrain_steps(windows, args.epochs, args.steps or cfg.train.steps, batch_size, args.world_size)
        ft_dir = out / scale / "finetune"
        pre_dir = Path(args.pretrained_from or out) / scale / "pretrain"
        if not (pre_dir / "pretrained.pt").exists():
            run(
                stage_command(
                    args.launcher,
                    "pretrain",
                    [
                        *(["--config", args.config] if args.config else []),
                        *[a for o in args.overrides for a in ("--set", o)],
                        "--shards",
                        args.shards,
                        "--mixture",
                        scale,
                        "--out",
                        str(pre_dir),
                        "--steps",
                        str(steps),
                        "--resume",
                        "--no-progress",
                    ],
                )
            )
        lift_dir = out / scale / "pretrain" / "lift"  # this ablation's, also with --pretrained-from
        if args.lift and not (lift_dir / "results.json").exists():  # the pretraining network's own lifting
            run(
                [
                    sys.executable,
                    "-m",
                    "finetune.evaluate",
                    str(pre_dir / "pretrained.pt"),
                    "--lift",
                    "--bn-shards",
                    args.shards,
                    "--store",
                    args.store,
                    "--datasets",
                    "h36m",
                    "--out",
                    str(lift_dir),
                    *(["--subjects", *args.eval_subjects] if args.eval_subjects else []),
                ]
            )
        finetuned = finetune_seeds(run, args, ["--init", str(pre_dir / "pretrained.pt")], ft_dir, common)
        rows.append(
            {
                "scale": scale,
                "datasets": sorted(d for d, w in per_dataset.items() if w),
                "windows_per_dataset": per_dataset,
                "windows": windows,
                "pretrain_steps": steps,
                "pretrained": str(pre_dir / "pretrained.pt"),
                **finetuned,
                **({"pretrained_lift": read_result(lift_dir)} if args.lift else {}),
            }
        )
    baseline = None
    if not args.no_baseline:
        baseline = finetune_seeds(run, args, scratch_network(cfg), out / "baseline" / "finetune", common)
    probes = {}
    if args.probe and rows:
        # frozen-feature probe: the shared layers fixed, from the largest scale's weights and from random ones
        last = rows[-1]["scale"]
        starts = {
            last: ["--init", str(out / last / "pretrain" / "pretrained.pt")],
            "random": scratch_network(cfg),
        }
        for name, init in starts.items():
            probe_dir = out / "probe" / name
            if not (probe_dir / "results.json").exists():
                run(
                    stage_command(
                        args.launcher,
                        "finetune",
                        [*init, "--freeze-shared", "--out", str(probe_dir), "--resume", *common],
                    )
                )
            probes[name] = read_result(probe_dir)
    warning = stand_in_warning(args.store)
    results = {
        "scales": rows,
        "baseline": baseline,
        "probes": probes,
        "clip_len": clip_len,
        "unit": "mm",
        "compute": "matched steps" if args.epochs is None else f"{args.epochs} epochs per scale",
        "warnings": [warning] if warning else [],
    }
    ft = load_finetune_config(args.finetune_config, args.finetune_overrides)
    steps = {r["pretrain_steps"] for r in rows}
    results["regime"] = regime(ft, args.eval_subjects, steps.pop() if len(steps) == 1 else None, args.seeds)
    write_json(out / "results.json", results)
    table = write_table(out / "results.md", rows, baseline, probes, header=results["regime"])
    plot(out / "data_scaling.png", rows, baseline, probes)
    print(table)
    if warning:
        print("\n" + "!" * 100 + f"\nWARNING: {warning}\n" + "!" * 100)
    print(f"results: {out / 'results.json'}\nplot: {out / 'data_scaling.png'}")
    return results


def add_run_arguments(p: argparse.ArgumentParser, runs: str) -> None:
    """The flags every experiment that runs the stages shares: ``--shards``, ``--store``, ``--launcher``,
    ``--seeds`` (finetuning seeds of ``runs``, e.g. "every scale and the baseline") and ``--eval-subjects``."""
    p.add_argument("--shards", required=True, help="shard folder (python -m shards build)")
    p.add_argument("--store", required=True, help="motion store (finetuning evaluates on its test split)")
    p.add_argument("--launcher", help='e.g. "deepspeed --num_gpus 8" (default: one python process)')
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        choices=range(1, 101),
        metavar="N",
        help=f"finetune {runs} with seeds 0..N-1; the table gives mean ± sd, the plot error bars (default 1)",
    )
    p.add_argument(
        "--eval-subjects",
        nargs="+",
        default=None,
        help="Human3.6M test subjects to evaluate on (default: every test subject in the store)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    head, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(
        prog="python -m experiments.ablate",
        description=head,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p, "every scale and the baseline")
    p.add_argument("--scales", nargs="+", default=["small", "base", "large"], help="data mixtures to compare")
    p.add_argument("--out", default="runs/ablate", help="results folder (default: runs/ablate)")
    p.add_argument("--config", help="pretraining config file or shipped name (python -m pretrain --config)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pretraining config override, repeatable",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, help="pretraining steps of every scale (default: train.steps)")
    group.add_argument("--epochs", type=float, help="passes over each scale's own windows instead")
    p.add_argument("--world-size", type=int, default=1, help="ranks the launcher starts (for --epochs)")
    p.add_argument("--finetune-config", help="finetuning config file or shipped name (python -m finetune --config)")
    p.add_argument(
        "--finetune-set",
        dest="finetune_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="finetuning config override, repeatable (python -m finetune --set)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip finetuning from scratch")
    p.add_argument(
        "--pretrained-from",
        metavar="DIR",
        help="take each scale's pretrained network from an earlier ablation's DIR/SCALE/pretrain/pretrained.pt "
        "instead of pretraining it (another finetuning regime of the same networks)",
    )
    p.add_argument(
        "--lift",
        action="store_true",
        help="also evaluate each pretrained network's own lifting "
        "before finetuning (python -m finetune.evaluate --lift)",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="also finetune with the shared layers frozen, from the "
        "last scale's weights and from random ones (a frozen-feature probe of the representation)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """``python -m experiments.ablate ...``: a mistake in the arguments (an unknown scale, a missing shard
    folder, store or network) is one line and exit status 2, before any stage runs."""
    args = parse_args(argv)
    with user_errors("python -m experiments.ablate"):
        check(args)
    return ablate(args)


if __name__ == "__main__":
    main()
