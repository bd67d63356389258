"""Posemill's CPU recipe side by side with VideoPose3D's official ``run.py`` (Pavllo et al., CVPR 2019; public
repository facebookresearch/VideoPose3D) at equal wall time, on Human3.6M with ground-truth 2D: the same
training subjects (S1, S5-S8, those present), the same test subject (S11), MPJPE and P-MPJPE per action.

    python -m experiments.videopose3d VP3D_CHECKOUT --data DATA/h36m [--work runs/videopose3d] \\
        [--posemill-run DIR | --posemill-config h36m --posemill-set KEY=VALUE ...] [--budget 20m] \\
        [--arc 3,3,3] [--threads 2]

VP3D_CHECKOUT is a checkout of that repository; its code is run (and its projection imported), never copied.
DATA/h36m is the Martinez h5 layout (``S*/MyPoses/3D_positions/<Action>[ <k>].h5``, dataset ``3D_positions``
(96, N) millimetres, world coordinates). S9 is never read, whether present or not.

1. VideoPose3D's inputs, in ``WORK/data/`` (``run.py`` reads ``data/data_3d_h36m.npz`` and
   ``data/data_2d_h36m_gt.npz`` relative to its working directory, so it runs with cwd WORK and the checkout
   stays untouched), built exactly as its ``data/prepare_data_h36m.py --from-archive`` does (that script uses
   h5py's removed ``.value``, so its logic is reproduced here, not run): ``positions_3d = {subject: {action:
   (N, 32, 3) float32 metres}}``, the action the file stem (``'Directions 1'``), S11 ``Directions`` skipped as
   the script does (its video is damaged), takes in sorted file order (the script's ``glob`` order is the file
   system's); then the ground-truth 2D ``positions_2d = {subject: {action: [(N, 17, 2) float32 pixels per
   camera]}}`` with ``metadata`` (``num_joints``, ``keypoints_symmetry``), computed by the checkout's own
   ``Human36mDataset``, ``world_to_camera``, ``project_to_2d`` and ``image_coordinates``. Each file is written
   atomically and kept when it exists (delete it to rebuild). The script's check for 30 takes per subject is
   a note here: the public copy lacks some takes.
2. Posemill: ``--posemill-run DIR`` reads a finished run (``DIR/results.json`` of ``python -m finetune`` /
   ``make h36m``: S11's MPJPE / P-MPJPE per action and their mean; ``train.train_seconds``, the training loop's
   wall time, plus the earlier invocations' time from ``metrics.jsonl`` when the run was resumed). Without
   it, the commands of ``make h36m`` run into ``WORK/posemill/``: ``python -m ingest h36m DATA --subjects ...``,
   ``python -m shards build --clip-len 27`` (the config's ``model.frames`` when set) and ``python -m finetune
   --config h36m --set eval.subjects=[S11] --resume`` (``--posemill-config`` / ``--posemill-set`` change it).
3. VideoPose3D: ``run.py -k gt -str S1,S5,S6,S7,S8 -ste S11 -arc 3,3,3 --no-eval --checkpoint-frequency 1``, its
   defaults otherwise (lr 1e-3 decayed by 0.95 per epoch, batch 1024, dropout 0.25, 1024 channels, train-time flip,
   which doubles every epoch's windows, and test-time flip), on the CPU (``CUDA_VISIBLE_DEVICES`` empty;
   ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``: ``--threads``), for the budget: ``--budget`` (``20m``, ``1200s``,
   ``1h``, seconds) or else posemill's training time. ``run.py`` has no time limit, so the budget is fitted within
   its CLI: a probe run (``--probe-batches`` batches' worth of ``--subset``, one epoch; stopped once its epoch ends,
   before its evaluation) measures its training rate R (windows/s, flipped copies counted); the budget affords A = R
   x budget windows, and one epoch of the full training data is W = 2 x frames windows; so ``-e E = ceil(A / W)``
   epochs of ``--subset A / (E x W)`` (at most 1). Under a budget of less than one epoch (every CPU budget of
   interest) that is one epoch, at the constant initial lr, over a contiguous ``subset`` share of every training
   sequence (``run.py``'s subset takes one run of frames per sequence, at a start drawn from its length): every take
   and camera is seen, as in the reference recipe's first epoch. ``run.py`` then evaluates the last weights on every
   frame of S11, all four cameras, with flip, in the same process (its ``--evaluate CHECKPOINT`` and ``--resume``
   fail under torch >= 2.6: ``torch.load`` now defaults to ``weights_only=True``, which refuses the numpy random
   state its checkpoints hold); its training time is the wall time from its "final evaluation will be carried out"
   line to its "Evaluating..." line (the training loop and the checkpoint; data loading and evaluation excluded, as
   for posemill).
4. Its per-action ``----Action----`` blocks and ``action-wise average`` lines are parsed (actions named as
   :data:`ingest.h36m.H36M_ACTIONS`), and one JSON line is printed on stdout (progress goes to stderr) and
   written to ``WORK/comparison.json``: ``{"budget_s", "videopose3d": {"train_s", "frames_seen", "mpjpe",
   "p_mpjpe", "actions", "args", ...}, "posemill": {"train_s", "mpjpe", "p_mpjpe", "actions", "config", ...},
   "mpjpe_reduction": 1 - posemill / videopose3d, "warnings"}``, errors in millimetres, times in seconds.
   ``WORK/videopose3d.log`` and ``WORK/probe.log`` hold run.py's output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from experiments.ablate import parse_budget
from finetune.config import load_config as load_finetune_config
from ingest.atomic import atomic_path, write_text
from ingest.cli import user_errors
from ingest.h36m import ACTION_ALIASES, H36M_ACTIONS
from ingest.untrusted import load_npz, open_h5
from training.runlog import read_metrics

PROG = "python -m experiments.videopose3d"
# prepare_data_h36m.py's subjects without S9, which this project never reads (held out for independent checks).
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S11")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECT = "S11"
SKIPPED = {("S11", "Directions")}  # prepare_data_h36m.py: "Discard corrupted video"
CAMERAS = 4  # Human3.6M cameras per take; run.py trains on every camera of every take
BATCH = 1024  # run.py's default batch (-b), in windows (one predicted frame each at -s 1)
MARKERS = {  # run.py's own lines, by which the stream of its output is timed
    "start": "** The final evaluation will be carried out after the last training epoch.",
    "train_frames": re.compile(r"^INFO: Training on (\d+) frames"),
    "test_frames": re.compile(r"^INFO: Testing on (\d+) frames"),
    "epoch": re.compile(r"^\[(\d+)\] time ([\d.]+) lr"),
    "evaluating": "Evaluating...",
}
Runner = Callable[[list[str]], None]


# -- inputs: data_3d_h36m.npz and data_2d_h36m_gt.npz ---------------------------------------------------------


def read_martinez_3d(data: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """``positions_3d`` as ``prepare_data_h36m.py --from-archive`` builds it from the Martinez h5 files under
    ``data``: ``{subject: {action: (N, 32, 3) float32 metres, world coordinates}}`` for the subjects of
    :data:`SUBJECTS` that are present (never S9), plus notes (an absent subject, a subject without the
    script's 30 takes).

    Raises:
        ValueError: a file without a (96, N) ``3D_positions`` (naming it). OSError: an unreadable file.
    """
    output: dict[str, dict[str, np.ndarray]] = {}
    notes = []
    for subject in SUBJECTS:
        folder = Path(data) / subject / "MyPoses" / "3D_positions"
        files = sorted(folder.glob("*.h5")) if folder.is_dir() else []
        if not files:
            notes.append(f"{subject}: no {folder}/*.h5; left out")
            continue
        if len(files) != 30:
            notes.append(f"{subject}: {len(files)} takes, not the 30 prepare_data_h36m.py asserts")
        output[subject] = {}
        for f in files:
            action = f.stem
            if (subject, action) in SKIPPED:
                continue
            with open_h5(f) as hf:
                if "3D_positions" not in hf:
                    raise ValueError(f"{f}: no '3D_positions' dataset (keys {sorted(hf)})")
                raw = hf["3D_positions"][()]
            if raw.ndim != 2 or raw.shape[0] != 96:
                raise ValueError(f"{f}: '3D_positions' has shape {raw.shape}, not (96, N)")
            positions = raw.reshape(32, 3, -1).transpose(2, 0, 1)
            positions /= 1000  # Meters instead of millimeters (the script's own line)
            output[subject][action] = positions.astype("float32")
    return output, notes


def write_npz(path: str | Path, **arrays) -> None:
    """``np.savez_compressed(path, **arrays)`` (dicts become 0-d object arrays, as VideoPose3D writes and
    reads them), atomically (:func:`ingest.atomic.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


@contextmanager
def videopose3d_modules(checkout: str | Path) -> Iterator[SimpleNamespace]:
    """The checkout's ``common`` package imported (``Human36mDataset``, ``world_to_camera``,
    ``project_to_2d``, ``image_coordinates``, ``wrap``); ``sys.path`` and ``sys.modules`` are restored
    afterwards, so nothing of it stays in this process's namespace."""
    before = set(sys.modules)
    sys.path.insert(0, str(Path(checkout).resolve()))
    try:
        dataset = importlib.import_module("common.h36m_dataset")
        camera = importlib.import_module("common.camera")
        utils = importlib.import_module("common.utils")
        yield SimpleNamespace(
            Human36mDataset=dataset.Human36mDataset,
            world_to_camera=camera.world_to_camera,
            project_to_2d=camera.project_to_2d,
            image_coordinates=camera.image_coordinates,
            wrap=utils.wrap,
        )
    finally:
        sys.path.remove(str(Path(checkout).resolve()))
        for name in set(sys.modules) - before:
            if name == "common" or name.startswith("common."):
                del sys.modules[name]


def gt_2d(path_3d: str | Path, checkout: str | Path) -> dict:
    """``data_2d_h36m_gt.npz``'s arrays from ``data_3d_h36m.npz``, by ``prepare_data_h36m.py``'s own steps
    with the checkout's dataset and camera code: ``{"positions_2d": {subject: {action: [(N, 17, 2) float32
    pixels, one per camera]}}, "metadata": {"num_joints": 17, "keypoints_symmetry": [left, right]}}``."""
    with videopose3d_modules(checkout) as vp:
        dataset = vp.Human36mDataset(str(path_3d))
        output_2d_poses = {}
        for subject in dataset.subjects():
            output_2d_poses[subject] = {}
            for action in dataset[subject].keys():
                anim = dataset[subject][action]
                positions_2d = []
                for cam in anim["cameras"]:
                    pos_3d = vp.world_to_camera(anim["positions"], R=cam["orientation"], t=cam["translation"])
                    pos_2d = vp.wrap(vp.project_to_2d, pos_3d, cam["intrinsic"], unsqueeze=True)
                    pos_2d_pixel_space = vp.image_coordinates(pos_2d, w=cam["res_w"], h=cam["res_h"])
                    positions_2d.append(pos_2d_pixel_space.astype("float32"))
                output_2d_poses[subject][action] = positions_2d
        metadata = {
            "num_joints": dataset.skeleton().num_joints(),
            "keypoints_symmetry": [dataset.skeleton().joints_left(), dataset.skeleton().joints_right()],
        }
    return {"positions_2d": output_2d_poses, "metadata": metadata}


def prepare_inputs(data: str | Path, checkout: str | Path, work: str | Path, log: Callable[[str], None]) -> list[str]:
    """``WORK/data/data_3d_h36m.npz`` and ``WORK/data/data_2d_h36m_gt.npz`` (:func:`read_martinez_3d`,
    :func:`gt_2d`), each written only when absent; returns the notes of the 3D conversion."""
    folder = Path(work) / "data"
    path_3d, path_2d = folder / "data_3d_h36m.npz", folder / "data_2d_h36m_gt.npz"
    notes: list[str] = []
    if path_3d.exists():
        log(f"{path_3d}: exists, kept")
    else:
        log(f"converting {data} (Martinez h5) -> {path_3d}")
        positions_3d, notes = read_martinez_3d(data)
        write_npz(path_3d, positions_3d=positions_3d)
    if path_2d.exists():
        log(f"{path_2d}: exists, kept")
    else:
        log(f"projecting ground-truth 2D with {checkout}/common -> {path_2d}")
        write_npz(path_2d, **gt_2d(path_3d, checkout))
    return notes


def sequence_lengths(path_3d: str | Path) -> dict[str, dict[str, int]]:
    """Frames per take, ``{subject: {action: N}}``, of a ``data_3d_h36m.npz`` (read as data only)."""
    positions = load_npz(path_3d)["positions_3d"].item()
    return {s: {a: len(p) for a, p in actions.items()} for s, actions in positions.items()}


# -- fitting the budget ---------------------------------------------------------------------------------------


def subset_frames(lengths: list[int], subset: float) -> int:
    """Training frames ``run.py --subset`` keeps of sequences of ``lengths`` frames (its ``fetch``, at
    ``--downsample 1``: ``int(round(n * subset))`` per sequence; every length once per camera)."""
    if subset >= 1:
        return sum(lengths)
    return sum(int(round(n * subset)) for n in lengths)


def fit_budget(budget_s: float, windows_per_s: float, frames: int, augment: bool = True) -> tuple[float, int]:
    """``(subset, epochs)`` for ``run.py`` to train about ``budget_s`` seconds at ``windows_per_s`` (windows a
    second, flipped copies counted) on ``frames`` training frames: the budget affords ``A = budget_s x
    windows_per_s`` windows, an epoch of all frames is ``W = frames`` windows (twice that with train-time
    flip), so ``epochs = ceil(A / W)`` passes over ``subset = A / (epochs x W)`` (at most 1) of each sequence.

    Raises:
        ValueError: the budget affords less than one batch of windows.
    """
    per_epoch = frames * (2 if augment else 1)
    affordable = budget_s * windows_per_s
    if affordable < BATCH:
        raise ValueError(
            f"a budget of {budget_s:.0f} s at {windows_per_s:.1f} windows/s affords {affordable:.0f} windows, "
            f"less than one batch of {BATCH}"
        )
    epochs = max(1, math.ceil(affordable / per_epoch))
    return min(1.0, affordable / (epochs * per_epoch)), epochs


# -- run.py ---------------------------------------------------------------------------------------------------


def parse_evaluation(text: str) -> dict:
    """``run.py``'s evaluation output (its ``evaluate`` and ``run_evaluation``): per action, the
    ``----Action----`` block's Protocol #1-#3 and velocity errors; the ``action-wise average`` lines.
    Actions are named and ordered as :data:`ingest.h36m.H36M_ACTIONS` (``TakingPhoto`` -> ``Photo``); the
    last evaluation in ``text`` counts.

    Returns:
        ``{"actions": {action: {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"}}, "printed_average": {"mpjpe",
        "p_mpjpe", "n_mpjpe", "mpjve"}}`` in mm (the averages as run.py rounds them).

    Raises:
        ValueError: no complete evaluation in ``text``.
    """
    metrics = {
        "Protocol #1 Error (MPJPE):": "mpjpe",
        "Protocol #2 Error (P-MPJPE):": "p_mpjpe",
        "Protocol #3 Error (N-MPJPE):": "n_mpjpe",
        "Velocity Error (MPJVE):": "mpjve",
    }
    averages = {
        "Protocol #1   (MPJPE) action-wise average:": "mpjpe",
        "Protocol #2 (P-MPJPE) action-wise average:": "p_mpjpe",
        "Protocol #3 (N-MPJPE) action-wise average:": "n_mpjpe",
        "Velocity      (MPJVE) action-wise average:": "mpjve",
    }
    actions: dict[str, dict[str, float]] = {}
    printed: dict[str, float] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        block = re.fullmatch(r"----(.*[^-].*)----", line)
        if block:
            if printed:  # a new evaluation after a complete one: start again
                actions, printed = {}, {}
            name = block.group(1).split(" ")[0]
            current = ACTION_ALIASES.get(name, name)
            actions[current] = {}
            continue
        for prefix, key in metrics.items():
            if line.startswith(prefix) and current is not None:
                actions[current][key] = float(line[len(prefix) :].split()[0])
        for prefix, key in averages.items():
            if line.startswith(prefix):
                printed[key] = float(line[len(prefix) :].split()[0])
    order = [a for a in H36M_ACTIONS if a in actions] + [a for a in actions if a not in H36M_ACTIONS]
    complete = {a: actions[a] for a in order if set(actions[a]) == set(metrics.values())}
    if not complete or set(printed) != set(averages.values()):
        raise ValueError("no complete run.py evaluation (per-action blocks and action-wise averages) in its output")
    return {"actions": complete, "printed_average": printed}


def stream(cmd: list[str], cwd: Path, env: dict, log: Path, stop: Callable[[str], bool] | None = None):
    """Run ``cmd`` with its output (stdout and stderr) timed line by line, copied to ``log`` and to our
    stderr; with ``stop``, the process is terminated after the first line for which it is true.

    Returns:
        ``(lines, returncode)``: ``lines`` as ``(seconds since start, text)``; the return code is None when
        stopped.

    Raises:
        subprocess.CalledProcessError: it failed (not stopped), naming the command; the log has its output.
    """
    print("+ (cd " + shlex.quote(str(cwd)) + " && " + shlex.join(cmd) + ")", file=sys.stderr, flush=True)
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log, "w") as out,
        subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc,
    ):
        stopped = False
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            out.write(line)
            out.flush()
            print(line, end="", file=sys.stderr, flush=True)
            if stop is not None and stop(line.rstrip("\n")):
                stopped = True
                proc.terminate()  # our own child, by its handle
                break
        proc.stdout.close()
        code = proc.wait()
    if stopped:
        return lines, None
    if code != 0:
        raise subprocess.CalledProcessError(code, cmd, output=f"see {log}")
    return lines, code


def marker_time(lines: list[tuple[float, str]], marker: str | re.Pattern) -> float | None:
    """Seconds at the first line matching ``marker`` (a regex, or a string equal to the stripped line)."""
    for t, line in lines:
        if marker.match(line) if isinstance(marker, re.Pattern) else line.strip() == marker:
            return t
    return None


def marker_value(lines: list[tuple[float, str]], pattern: re.Pattern) -> int | None:
    """The first group of the first line matching ``pattern``, as an int."""
    for _, line in lines:
        m = pattern.match(line)
        if m:
            return int(m.group(1))
    return None


def run_py_args(train: list[str], arc: str, subset: float, epochs: int, checkpoint: str, frequency: int) -> list[str]:
    """``run.py``'s arguments: GT 2D, ``train`` subjects, test S11, ``arc`` filter widths, ``subset`` of every
    training sequence for ``epochs`` epochs, no per-epoch evaluation, checkpoints every ``frequency`` epochs;
    its defaults otherwise."""
    return [
        *("-k", "gt", "-str", ",".join(train), "-ste", TEST_SUBJECT, "-arc", arc),
        *(["--subset", f"{subset:.8g}"] if subset < 1 else []),
        *("-e", str(epochs), "--no-eval", "--checkpoint-frequency", str(frequency), "-c", checkpoint),
    ]


def vp3d_env(threads: int) -> dict:
    """Our environment with torch's CPU threads set (and no GPU: this comparison is on the CPU)."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1"
    )
    return env


def probe_rate(args: argparse.Namespace, work: Path, train: list[str], lengths: list[int]) -> dict:
    """One short epoch of ``run.py`` (about ``--probe-batches`` batches: the same ``--subset`` arithmetic),
    stopped at its epoch line, before its evaluation: ``{"subset", "windows", "seconds", "windows_per_s"}``
    (windows with their flipped copies; seconds of its training loop)."""
    frames = CAMERAS * sum(lengths)
    subset = min(1.0, args.probe_batches * BATCH / (2 * frames))
    cmd = [args.python, "-u", str(Path(args.checkout).resolve() / "run.py")]
    cmd += run_py_args(train, args.arc, subset, 1, "probe-checkpoint", 1000)
    lines, _ = stream(
        cmd, work, vp3d_env(args.threads), work / "probe.log", stop=lambda line: bool(MARKERS["epoch"].match(line))
    )
    start, end = marker_time(lines, MARKERS["start"]), marker_time(lines, MARKERS["epoch"])
    train_frames = marker_value(lines, MARKERS["train_frames"])
    if start is None or end is None or not train_frames:
        raise RuntimeError(f"the probe run of run.py ended before its first epoch; see {work / 'probe.log'}")
    windows = 2 * train_frames
    return {"subset": subset, "windows": windows, "seconds": end - start, "windows_per_s": windows / (end - start)}


def run_videopose3d(args: argparse.Namespace, work: Path, budget_s: float) -> dict:
    """Fit the budget (:func:`probe_rate`, :func:`fit_budget`), train with ``run.py`` and parse its final
    evaluation; returns the JSON's ``videopose3d`` part."""
    lengths_by = sequence_lengths(work / "data" / "data_3d_h36m.npz")
    train = [s for s in TRAIN_SUBJECTS if s in lengths_by]
    lengths = [n for s in train for n in lengths_by[s].values()]
    frames = CAMERAS * sum(lengths)
    probe = probe_rate(args, work, train, lengths)
    subset, epochs = fit_budget(budget_s, probe["windows_per_s"], frames)
    subset = float(f"{subset:.8g}")  # as run.py is given it
    expected = CAMERAS * subset_frames(lengths, subset)
    run_args = run_py_args(train, args.arc, subset, epochs, "checkpoint", 1)
    cmd = [args.python, "-u", str(Path(args.checkout).resolve() / "run.py"), *run_args]
    lines, _ = stream(cmd, work, vp3d_env(args.threads), work / "videopose3d.log")
    start, evaluating = marker_time(lines, MARKERS["start"]), marker_time(lines, MARKERS["evaluating"])
    if start is None or evaluating is None:
        raise RuntimeError(f"run.py's output lacks its training markers; see {work / 'videopose3d.log'}")
    train_frames = marker_value(lines, MARKERS["train_frames"])
    parsed = parse_evaluation("\n".join(line for _, line in lines))
    actions = parsed["actions"]
    return {
        "train_s": round(evaluating - start, 1),
        "frames_seen": epochs * 2 * train_frames,
        "mpjpe": float(np.mean([m["mpjpe"] for m in actions.values()])),
        "p_mpjpe": float(np.mean([m["p_mpjpe"] for m in actions.values()])),
        "actions": {a: {"mpjpe": m["mpjpe"], "p_mpjpe": m["p_mpjpe"]} for a, m in actions.items()},
        "printed_average": parsed["printed_average"],
        "args": run_args,
        "subset": subset,
        "epochs": epochs,
        "train_frames": train_frames,
        "train_frames_expected": expected,
        "test_frames": marker_value(lines, MARKERS["test_frames"]),
        "eval_s": round(lines[-1][0] - evaluating, 1),
        "probe": probe,
        "threads": args.threads,
    }


# -- posemill -------------------------------------------------------------------------------------------------


def run_command(cmd: list[str], ok: tuple[int, ...] = (0,)) -> None:
    """Run one stage, echoing the command, its output on our stderr; raises CalledProcessError when its
    exit status is not in ``ok``."""
    print("+ " + shlex.join(cmd), file=sys.stderr, flush=True)
    code = subprocess.run(cmd, stdout=sys.stderr).returncode
    if code not in ok:
        raise subprocess.CalledProcessError(code, cmd)


def run_posemill(args: argparse.Namespace, folder: Path, run: Callable = run_command) -> Path:
    """The commands of ``make h36m`` (ingest, 27-frame shards, ``finetune --config h36m``, eval S11) into
    ``folder`` (``store``, ``shards``, ``run``); a finished run (``run/results.json``) is kept, an
    interrupted one resumes. Returns the run folder."""
    store, shards, out = folder / "store", folder / "shards", folder / "run"
    if (out / "results.json").exists():
        return out
    subjects = [s for s in SUBJECTS if (Path(args.data) / s).is_dir()]
    py = sys.executable
    # exit status 1: some files failed to convert, each named in its output (make h36m accepts it too)
    ingest = [py, "-m", "ingest", "h36m", str(args.data), "--store", str(store), "--no-progress", "--subjects"]
    run([*ingest, *subjects], ok=(0, 1))
    if not (shards / "manifest.json").exists():
        cfg = load_finetune_config(args.posemill_config, args.posemill_set)
        clip = str(cfg.model.frames or 27)
        run([py, "-m", "shards", "build", "--store", str(store), "--out", str(shards), "--clip-len", clip])
    sets = [a for o in [*args.posemill_set, f"eval.subjects=[{TEST_SUBJECT}]"] for a in ("--set", o)]
    run(
        [py, "-m", "finetune", "--config", args.posemill_config, "--store", str(store), "--shards", str(shards)]
        + ["--out", str(out), "--resume", "--no-progress", *sets]
    )
    return out


def train_seconds(run_dir: Path, results: dict) -> float:
    """The training wall time of a finetune run: ``results.json``'s ``train.train_seconds`` (its last
    invocation's loop), plus, when ``metrics.jsonl`` shows earlier invocations (its ``seconds`` restarting),
    the time each of them logged up to where the next resumed."""
    seconds = float(results["train"]["train_seconds"])
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return seconds
    earlier, last = 0.0, None
    for record in read_metrics(path):
        s = record.get("seconds")
        if s is None:
            continue
        if last is not None and s < last:
            earlier += last
        last = s
    return seconds + earlier


def read_posemill(run_dir: str | Path) -> dict:
    """The JSON's ``posemill`` part from a finished finetune run (``results.json``): S11's MPJPE / P-MPJPE (mm)
    per action and their mean, the training time (:func:`train_seconds`), the config.

    Raises:
        FileNotFoundError: no results.json. ValueError: no S11 Human3.6M results or no training record in it.
    """
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"--posemill-run {run_dir}: no results.json (a finished python -m finetune run)")
    results = json.loads(path.read_text())
    s11 = results.get("h36m", {}).get("subjects", {}).get(TEST_SUBJECT)
    if s11 is None:
        raise ValueError(f"{path}: no Human3.6M results for {TEST_SUBJECT} (evaluate with eval.subjects=[S11])")
    if "train_seconds" not in results.get("train", {}):
        raise ValueError(f"{path}: no train.train_seconds (not written by python -m finetune)")
    config = results["train"].get("config", {})
    return {
        "train_s": round(train_seconds(run_dir, results), 1),
        "mpjpe": s11["average"]["mpjpe"],
        "p_mpjpe": s11["average"]["p_mpjpe"],
        "actions": {a: {"mpjpe": m["mpjpe"], "p_mpjpe": m["p_mpjpe"]} for a, m in s11["actions"].items()},
        "config": config,
        "run": str(run_dir),
        "steps": results["train"].get("steps"),
        "test_frames": s11["average"].get("frames"),
        "flip": results.get("flip"),
        "eval_cameras": config.get("eval", {}).get("cameras"),
    }


# -- the comparison -------------------------------------------------------------------------------------------


def warnings_for(result: dict) -> list[str]:
    """What makes the two sides unequal: the training time off the budget, other test frames, other actions."""
    out = []
    vp, pm, budget = result["videopose3d"], result["posemill"], result["budget_s"]
    if abs(vp["train_s"] / budget - 1) > 0.15:
        out.append(f"VideoPose3D trained {vp['train_s']:.0f} s against a budget of {budget:.0f} s")
    if vp["test_frames"] and pm["test_frames"] and vp["test_frames"] != pm["test_frames"]:
        out.append(f"test frames differ: VideoPose3D {vp['test_frames']}, posemill {pm['test_frames']}")
    if pm["eval_cameras"]:
        out.append(f"posemill was evaluated on cameras {pm['eval_cameras']} only, VideoPose3D on all four")
    if pm["flip"] is False:
        out.append("posemill was evaluated without test-time flip, VideoPose3D with it")
    if set(vp["actions"]) != set(pm["actions"]):
        out.append(f"actions differ: VideoPose3D {sorted(vp['actions'])}, posemill {sorted(pm['actions'])}")
    if vp["train_frames"] != vp["train_frames_expected"]:
        out.append(f"run.py trained on {vp['train_frames']} frames, {vp['train_frames_expected']} expected")
    return out


def check(args: argparse.Namespace) -> None:
    """What the comparison needs, checked before anything runs: the checkout, the data folder (S11 and a
    training subject), the posemill run when given, the budget and architecture.

    Raises:
        FileNotFoundError / ValueError: naming the flag and path or value.
    """
    checkout = Path(args.checkout)
    for name in ("run.py", "common/h36m_dataset.py", "common/camera.py"):
        if not (checkout / name).is_file():
            raise FileNotFoundError(f"{checkout}: no {name}; give a checkout of facebookresearch/VideoPose3D")
    data = Path(args.data)
    for subject in (TEST_SUBJECT,):
        if not (data / subject / "MyPoses" / "3D_positions").is_dir():
            raise FileNotFoundError(f"--data {data}: no {subject}/MyPoses/3D_positions (the Martinez h5 layout)")
    if not any((data / s / "MyPoses" / "3D_positions").is_dir() for s in TRAIN_SUBJECTS):
        raise FileNotFoundError(f"--data {data}: none of the training subjects {', '.join(TRAIN_SUBJECTS)}")
    if args.posemill_run:
        read_posemill(args.posemill_run)
    else:
        load_finetune_config(args.posemill_config, args.posemill_set)
    if args.budget is not None:
        parse_budget(args.budget)
    widths = args.arc.split(",")
    if not all(w.strip().isdigit() and int(w) >= 1 for w in widths):
        raise ValueError(f"--arc {args.arc!r}: filter widths are positive integers separated by commas (3,3,3)")
    for flag in ("threads", "probe_batches"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")


def compare(args: argparse.Namespace, run: Callable = run_command) -> dict:
    """Steps 1-4 of the module's docstring; returns the printed dict."""
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    notes = prepare_inputs(args.data, args.checkout, work, log)
    run_dir = Path(args.posemill_run) if args.posemill_run else run_posemill(args, work / "posemill", run)
    posemill = read_posemill(run_dir)
    budget_s = parse_budget(args.budget) if args.budget is not None else posemill["train_s"]
    videopose3d = run_videopose3d(args, work, budget_s)
    result = {
        "budget_s": round(budget_s, 1),
        "videopose3d": videopose3d,
        "posemill": posemill,
        "mpjpe_reduction": round(1 - posemill["mpjpe"] / videopose3d["mpjpe"], 4),
        "p_mpjpe_reduction": round(1 - posemill["p_mpjpe"] / videopose3d["p_mpjpe"], 4),
        "unit": "mm",
        "test_subject": TEST_SUBJECT,
        "notes": notes,
    }
    result["warnings"] = warnings_for(result)
    line = json.dumps(result)
    write_text(work / "comparison.json", line + "\n")
    print(line, flush=True)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    head, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(
        prog=PROG, description=head, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkout", help="a checkout of facebookresearch/VideoPose3D (its run.py is run, not copied)")
    p.add_argument("--data", required=True, help="Human3.6M in the Martinez h5 layout (S*/MyPoses/3D_positions/)")
    p.add_argument("--work", default="runs/videopose3d", help="work folder (default: runs/videopose3d)")
    p.add_argument(
        "--posemill-run",
        metavar="DIR",
        help="a finished python -m finetune run evaluated on S11 (DIR/results.json); default: run the recipe",
    )
    p.add_argument("--posemill-config", default="h36m", help="finetune config of the recipe run (default: h36m)")
    p.add_argument(
        "--posemill-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="finetune config override of the recipe run, repeatable (python -m finetune --set)",
    )
    p.add_argument(
        "--budget", help="VideoPose3D's training time: 20m, 1200s, 1h, seconds (default: posemill's training time)"
    )
    p.add_argument("--arc", default="3,3,3", help="run.py's filter widths (-arc; default 3,3,3: 27 frames)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of run.py (OMP_NUM_THREADS; default 2)")
    p.add_argument(
        "--probe-batches",
        type=int,
        default=8,
        help="batches of 1024 windows in the probe run that measures run.py's speed (default 8)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter for run.py (default: this one)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """``python -m experiments.videopose3d CHECKOUT --data DATA ...``: a mistake in the arguments (no checkout,
    no data, an unfinished posemill run, a bad budget) is one line and exit status 2, before anything runs."""
    args = parse_args(argv)
    with user_errors(PROG):
        check(args)
    return compare(args)


if __name__ == "__main__":
    main()
