"""A plain (not editable) install: ``pip install .`` puts the package data (DeepSpeed and run configs, the
mixtures, the published calibration) beside the code, and pretraining, finetuning, evaluation and the demo
work from another directory with nothing of the checkout on their path, the configs named as shipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from finetune_fakes import make_sequence

from ingest.store import MotionStore
from shards.writer import build

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (
    "training/deepspeed/cpu_fp32.json",
    "pretrain/configs/demo.yaml",
    "finetune/configs/demo.yaml",
    "finetune/configs/h36m-semi.yaml",
    "finetune/configs/h36m-full.yaml",
    "finetune/configs/h36m.yaml",
    "shards/mixtures.json",
    "ingest/h36m_calibration.json",
)


@pytest.mark.slow
def test_installed_package_runs_every_stage_from_another_directory(tmp_path, ray_local):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    for data in SHIPPED:
        assert (target / data).is_file(), data
    rng = np.random.default_rng(0)
    motion = MotionStore.open(str(tmp_path / "store"))
    motion.write_part(
        "h36m", "train", [make_sequence(rng, f"S1_Walking_{i}", "S1", "Walking", "train", 120) for i in range(3)]
    )
    motion.write_part("h36m", "test", [make_sequence(rng, "S11_Eating_1", "S11", "Eating", "test", 40)])
    build(str(tmp_path / "store"), tmp_path / "shards", segment_len=64, clip_len=27, shard_size=30_000, progress=False)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env |= {
        "PYTHONPATH": str(target),
        "DS_ACCELERATOR": "cpu",
        "PYTHONWARNINGS": "ignore",
        "RAY_DISABLE_USAGE_STATS": "1",
    }

    def run(*cmd: str) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    where = run(
        sys.executable,
        "-c",
        "import json, training.engine, finetune.evaluate; print(json.dumps("
        "[training.engine.__file__, finetune.evaluate.__file__, str(training.engine.default_ds_config())]))",
    )
    assert all(p.startswith(str(target)) for p in json.loads(where.stdout))
    shards, store = str(tmp_path / "shards"), str(tmp_path / "store")
    run(
        sys.executable,
        "-m",
        "pretrain",
        "--config",
        "demo",
        "--shards",
        shards,
        "--mixture",
        "base",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        "pre",
        "--no-progress",
        "--set",
        "train.warmup_steps=1",
    )
    assert (work / "pre" / "pretrained.pt").is_file()
    run(
        sys.executable,
        "-m",
        "finetune",
        "--config",
        "demo",
        "--init",
        "pre/pretrained.pt",
        "--store",
        store,
        "--shards",
        shards,
        "--out",
        "ft",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--no-progress",
    )
    assert json.loads((work / "ft" / "results.json").read_text())["h36m"]["average"]["frames"] > 0
    run(sys.executable, "-m", "finetune.evaluate", "ft", "--store", store, "--flip", "--out", "ev")
    assert json.loads((work / "ev" / "results.json").read_text())["flip"] is True

    # the demo end to end (samples, ingest, shards, the ablation), the stages shortened by its knobs
    (work / "pre.yaml").write_text(
        "preset: tiny\nmodel: {frames: 27}\ndata: {batch_size: 8}\ntrain: {steps: 2, warmup_steps: 1, threads: 1}\n"
    )
    (work / "ft.yaml").write_text("data: {batch_size: 16}\ntrain: {max_steps: 2, threads: 1}\n")
    env |= {"PYTHON": sys.executable, "CONFIG": "pre.yaml", "FINETUNE_CONFIG": "ft.yaml", "SCALES": "small"}
    demo = run("bash", str(ROOT / "demo.sh"), "", "demo")
    table = (work / "demo" / "ablation" / "results.md").read_text()
    assert "| no pretraining |" in table
    assert "wall time per stage" in demo.stdout
    again = run("bash", str(ROOT / "demo.sh"), "", "demo")  # a rerun (e.g. with more seeds) finishes, redoing nothing
    assert "manifest.json exists, kept" in again.stdout
    assert not [line for line in again.stdout.splitlines() if line.startswith("+ ")]  # no stage command ran
    assert (work / "demo" / "ablation" / "results.md").read_text() == table
