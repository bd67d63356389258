"""Every command line answers a user's mistake with one line naming the thing, and exit status 2.

A table of common mistakes (issue 20's list and issue 16's examples), each run through the command's own
``main``: it must exit with status 2 before doing any work, print exactly one line on stderr that starts
with the command's name and names the flag, file or value, and print no traceback. One case runs as a real
process, to show the same holds outside pytest.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from finetune_fakes import make_sequence

from finetune.checkpoint import save_lifter
from finetune.model import Lifter
from ingest.store import MotionStore
from pretrain.model import preset
from shards.writer import build
from training.loop import check_out


@pytest.fixture(scope="module")
def data(tmp_path_factory, ray_local):
    """A store (S1 train, S11 test), its shards at clip length 9, a text file, a finetuned lifter, a run
    folder holding a run, an empty folder and a Human3.6M-like source folder."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(root / "store"))
    store.write_part("h36m", "train", [make_sequence(rng, "S1_Walking_1", "S1", "Walking", "train", 120)])
    store.write_part("h36m", "test", [make_sequence(rng, "S11_Eating_1", "S11", "Eating", "test", 40)])
    build(str(root / "store"), root / "shards", clip_len=9, shard_size=50_000, num_cpus=1, progress=False)
    (root / "text.pt").write_text("not a checkpoint\n")
    save_lifter(root / "lifter.pt", Lifter(preset("tiny", frames=9), frames=9))
    (root / "held" / "checkpoints").mkdir(parents=True)
    (root / "held" / "checkpoints" / "latest").write_text("step_4")
    (root / "held" / "metrics.jsonl").write_text('{"step": 1}\n')
    (root / "empty").mkdir()
    (root / "h36m" / "S1" / "MyPoses" / "3D_positions").mkdir(parents=True)
    (root / "h36m" / "S1" / "MyPoses" / "3D_positions" / "Walking 1.h5").write_bytes(b"")
    (root / "amass").mkdir()
    return root


def cases():
    """(command module, argv with {root} for the fixture's folder, a fragment the one line must hold)."""
    pre = ["--shards", "{root}/shards", "--out", "{root}/p", "--preset", "tiny", "--frames", "9"]
    ft = ["--shards", "{root}/shards", "--store", "{root}/store", "--out", "{root}/f", "--preset", "tiny"]
    ft += ["--frames", "9"]
    return [
        ("pretrain", [*pre, "--set", "data.clip_len=0"], "data.clip_len must be >= 1, got 0"),
        ("pretrain", [*pre, "--steps", "-5"], "train.steps must be >= 1, got -5"),
        ("pretrain", [*pre, "--lr", "0"], "train.lr must be positive"),
        ("pretrain", [*pre, "--mixture", "nosuch"], "unknown mixture 'nosuch'"),
        ("pretrain", [*pre, "--set", "data.nosuch=1"], "unknown key(s) ['nosuch']"),
        ("pretrain", [*pre, "--set", "mask.frame_ratio=-0.5"], "mask.frame_ratio=-0.5"),
        ("pretrain", [*pre, "--config", "{root}/missing.yaml"], "missing.yaml: no such config file"),
        ("pretrain", ["--shards", "{root}/empty", "--out", "{root}/p"], "empty/manifest.json: no shard manifest"),
        ("pretrain", [*pre[:6], "--frames", "27"], "clip_len 27 must be in 1..9"),
        ("pretrain", [*pre[:2], "--out", "{root}/held", *pre[4:]], "holds a run (latest, metrics.jsonl)"),
        ("pretrain", [*pre, "--resume", "--overwrite"], "give one of them"),
        (
            "finetune",
            [*ft[:2], "--store", "{root}/nonexistent", *ft[4:]],
            "nonexistent: no h36m or mpi_inf_3dhp dataset to evaluate on",
        ),
        ("finetune", [*ft, "--init", "{root}/text.pt"], "text.pt: not loaded"),
        ("finetune", [*ft, "--init", "{root}/missing.pt"], "missing.pt: no such export file"),
        (
            "finetune",
            [*ft, "--init", "{root}/lifter.pt"],
            "lifter.pt: a 'posemill-lifter/1' file, not a pretraining export",
        ),
        ("finetune", [*ft, "--max-steps", "0"], "train.max_steps must be >= 1, got 0"),
        ("finetune", [*ft, "--subjects", "S9"], "no train window"),
        ("finetune", [*ft, "--refine", "{root}/missing.pt"], "no finetuned lifter at"),
        (
            "finetune",
            [*ft, "--refine", "{root}/lifter.pt", "--init", "{root}/lifter.pt"],
            "model.init: a refine stage starts from the finetuned lifter",
        ),
        (
            "finetune",
            [*ft, "--refine", "{root}/lifter.pt", "--backbone", "videopose3d"],
            "its lifter's backbone is mpm, but model.backbone is videopose3d",
        ),
        ("finetune.evaluate", ["{root}/missing", "--store", "{root}/store"], "no finetuned lifter at"),
        ("finetune.evaluate", ["{root}/text.pt", "--store", "{root}/store"], "text.pt: not loaded"),
        (
            "finetune.evaluate",
            ["{root}/lifter.pt", "--store", "{root}/nonexistent"],
            "no h36m or mpi_inf_3dhp dataset to evaluate on",
        ),
        (
            "finetune.evaluate",
            ["{root}/lifter.pt", "--store", "{root}/store", "--subjects", "S5"],
            "no test-split sequence of subjects ['S5']",
        ),
        ("shards", ["build", "--store", "{root}/nonexistent", "--out", "{root}/s"], "no motion store there"),
        ("shards", ["build", "--store", "{root}/store", "--out", "{root}/shards"], "already has shards"),
        ("shards", ["verify", "{root}/empty"], "no shard manifest"),
        ("shards", ["inspect", "{root}/shards", "--mixture", "nosuch"], "unknown mixture 'nosuch'"),
        ("ingest", ["h36m", "{root}/empty", "--store", "{root}/i"], "no Human3.6M files"),
        ("ingest", ["h36m", "{root}/h36m", "--store", "{root}/i", "--cameras", "{root}/no.h5"], "--cameras"),
        ("ingest", ["h36m", "{root}/h36m", "--store", "{root}/i", "--detections", "{root}/no.npz"], "--detections"),
        ("ingest", ["amass", "{root}/amass", "--store", "{root}/i", "--body-models", "{root}/no"], "--body-models"),
        (
            "ingest",
            ["amass", "{root}/amass", "--store", "{root}/i", "--body-models", "{root}", "--views", "0"],
            "--views",
        ),
        ("ingest", ["samples", "{root}/h36m"], "not written by 'ingest samples'"),
        (
            "experiments.ablate",
            ["--shards", "{root}/shards", "--store", "{root}/store", "--scales", "nosuch", "--out", "{root}/a"],
            "unknown mixture 'nosuch'",
        ),
        (
            "experiments.ablate",
            ["--shards", "{root}/empty", "--store", "{root}/store", "--scales", "small", "--out", "{root}/a"],
            "no shard manifest",
        ),
        (
            "experiments.compare",
            ["--shards", "{root}/shards", "--store", "{root}/store", "--backbones", "nosuch", "--out", "{root}/c"],
            "--backbones: unknown ['nosuch']",
        ),
        (
            "experiments.compare",
            ["--shards", "{root}/shards", "--store", "{root}/store", "--backbones", "videopose3d", "--refine"],
            "--refine refines MPM's finetuned lifter",
        ),
    ]


@pytest.mark.parametrize(("module", "argv", "fragment"), cases(), ids=lambda v: v if isinstance(v, str) else None)
def test_a_mistake_is_one_line_and_status_2(data, module, argv, fragment, capsys, monkeypatch):
    monkeypatch.delenv("POSEMILL_TRACEBACK", raising=False)
    main = importlib.import_module(module if module.count(".") else f"{module}.__main__").main
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(root=data) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m {module}"), lines[0]
    assert fragment in lines[0], lines[0]


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("POSEMILL_TRACEBACK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "shards", "build", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"python -m shards build: error: --store {tmp_path / 'missing'}: no motion store there "
        f"(write one with python -m ingest ...)"
    ]
    env["POSEMILL_TRACEBACK"] = "1"  # for debugging, the traceback is one variable away
    proc = subprocess.run(
        [sys.executable, "-m", "shards", "build", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr


def test_overwrite_removes_the_old_run_and_resume_keeps_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_4").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("step_4")
    (run / "metrics.jsonl").write_text('{"step": 4}\n')
    (run / "config.json").write_text("{}")
    check_out(run, resume=True, overwrite=False)
    assert (run / "checkpoints" / "latest").exists() and (run / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match="holds a run"):
        check_out(run, resume=False, overwrite=False)
    check_out(run, resume=False, overwrite=True)
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
    check_out(run, resume=False, overwrite=False)  # nothing held now: a new run may start
    assert (run / "config.json").exists()  # what is not the run's state is left alone


def test_an_empty_metrics_file_is_not_a_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    check_out(tmp_path, resume=False, overwrite=False)
    assert Path(tmp_path / "metrics.jsonl").exists()
