"""Pretraining on shards of the real Human3.6M files (POSEMILL_REAL_DATA): the losses fall."""

from __future__ import annotations

import pytest

from ingest.h36m import H36MReader
from ingest.job import run_ingest
from pretrain.config import Config
from pretrain.train import train
from shards.writer import build
from training.runlog import read_metrics
from training.settings import build as build_config


@pytest.mark.real_data
def test_tiny_pretraining_on_real_h36m(real_data, tmp_path, ray_local):
    if not (real_data / "h36m").is_dir():
        pytest.skip(f"{real_data / 'h36m'} is absent")
    run_ingest(H36MReader(subjects=("S1",)), real_data / "h36m", str(tmp_path / "store"), progress=False)
    build(str(tmp_path / "store"), tmp_path / "shards", clip_len=27, progress=False)
    cfg = build_config(
        Config,
        {
            "preset": "tiny",
            "model": {"joints": 16},
            "data": {"shards": str(tmp_path / "shards"), "datasets": ["h36m"], "batch_size": 16, "stride": 5},
            "train": {
                "out": str(tmp_path / "run"),
                "steps": 40,
                "lr": 3e-3,
                "warmup_steps": 4,
                "log_every": 4,
                "checkpoint_every": 40,
                "threads": 1,
            },
        },
    )
    run = train(cfg, progress=False)
    records = read_metrics(run["metrics"])
    first, last = records[0], records[-1]
    assert last["loss_2d"] < 0.7 * first["loss_2d"] and last["loss_3d"] < 0.7 * first["loss_3d"]
    # root-relative Human3.6M joints lie within about a metre of the pelvis: a trained reconstruction error
    # far above that would mean the targets are not the streamed metres
    assert last["loss_3d"] < 0.5
