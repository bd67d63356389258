"""A plain (not editable) install: ``pip install .`` puts the package data (DeepSpeed and run configs, the
mixtures, the published calibration) beside the code, and a one-rank pretraining run works from another
directory with nothing of the checkout on its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shards_fakes import make_store

from shards.writer import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_package_pretrains_from_another_directory(tmp_path, ray_local):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, cwd=tmp_path)
    for data in ("pretrain/configs/cpu_fp32.json", "pretrain/configs/demo.yaml", "shards/mixtures.json",
                 "ingest/h36m_calibration.json"):
        assert (target / data).is_file(), data
    make_store(tmp_path / "store")
    build(str(tmp_path / "store"), tmp_path / "shards", segment_len=64, clip_len=9, shard_size=30_000,
          progress=False)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env |= {"PYTHONPATH": str(target), "DS_ACCELERATOR": "cpu", "PYTHONWARNINGS": "ignore"}
    code = ("import json, pretrain.engine, pretrain.__main__ as m; "
            "print(json.dumps({'engine': pretrain.engine.__file__, 'ds': str(pretrain.engine.default_ds_config())}));"
            "m.main()")
    run = subprocess.run([sys.executable, "-c", code, "--preset", "tiny", "--frames", "9", "--shards",
                          str(tmp_path / "shards"), "--mixture", "base", "--steps", "2", "--batch-size", "4",
                          "--out", str(work / "run"), "--no-progress", "--set", "train.warmup_steps=1"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    where = json.loads(run.stdout.splitlines()[0])
    assert where["engine"].startswith(str(target)) and where["ds"].startswith(str(target))
    assert (work / "run" / "pretrained.pt").is_file()
