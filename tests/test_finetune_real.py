"""Real data end to end (POSEMILL_REAL_DATA): Human3.6M S1 and S11 and the AMASS sample are converted,
sharded, pretrained on briefly (Human3.6M train split + AMASS), finetuned on S1 and evaluated on S11; the
finetuned lifter must beat the mean-training-pose baseline by a wide margin."""

from __future__ import annotations

import pytest
from finetune_fakes import mean_pose_predictor, one_rank_env

from finetune.config import FinetuneConfig
from finetune.evaluate import evaluate_h36m, format_h36m_table
from finetune.train import train
from ingest.amass import AmassReader
from ingest.h36m import H36M_ACTIONS, H36MReader
from ingest.job import run_ingest
from ingest.samples.stand_in import write_stand_in
from ingest.store import MotionStore
from pretrain.config import Config
from pretrain.train import train as pretrain
from shards.writer import build
from training.settings import build as build_config

CAMERA = "54138969"  # one of S11's four cameras keeps the evaluation within CPU seconds
FRAMES = 9


@pytest.mark.real_data
def test_finetuned_lifter_beats_the_mean_pose_on_s11(real_data, tmp_path, ray_local):
    if not (real_data / "h36m" / "S11").is_dir():
        pytest.skip(f"{real_data / 'h36m'} lacks S11")
    store = str(tmp_path / "store")
    run_ingest(H36MReader(subjects=("S1", "S11")), real_data / "h36m", store, progress=False)
    datasets = ["h36m"]
    if any((real_data / "amass").rglob("*.npz")):
        write_stand_in(tmp_path / "body_models")  # no licensed body model here: the generated stand-in
        run_ingest(AmassReader(tmp_path / "body_models"), real_data / "amass", store, progress=False)
        datasets.append("amass")
    build(store, tmp_path / "shards", clip_len=FRAMES, progress=False)
    with one_rank_env():
        pre = pretrain(
            build_config(
                Config,
                {
                    "preset": "tiny",
                    "model": {"frames": FRAMES},
                    "data": {"shards": str(tmp_path / "shards"), "datasets": datasets, "batch_size": 32},
                    "train": {
                        "steps": 20,
                        "warmup_steps": 5,
                        "lr": 2e-3,
                        "out": str(tmp_path / "pre"),
                        "log_every": 10,
                    },
                },
            ),
            progress=False,
        )
        summary = train(
            build_config(
                FinetuneConfig,
                {
                    "model": {"init": pre["export"], "frames": FRAMES},
                    "data": {"shards": str(tmp_path / "shards"), "batch_size": 128},
                    "train": {"out": str(tmp_path / "ft"), "lr": 3e-3, "max_steps": 300, "log_every": 50},
                    "eval": {"store": store, "subjects": ["S11"], "cameras": [CAMERA]},
                },
            )
        )
    assert summary["loaded"] > 0
    result = summary["results"]
    view = MotionStore.open(store)["h36m"]
    baseline = evaluate_h36m(mean_pose_predictor(view), view, FRAMES, subjects=["S11"], cameras=[CAMERA])
    print(format_h36m_table(baseline, title="mean training pose (S1) on S11"))
    assert set(result["actions"]) == set(H36M_ACTIONS)  # S11 has all 15 actions (Directions: one take)
    assert result["average"]["frames"] == baseline["average"]["frames"] > 50_000
    assert result["average"]["mpjpe"] < 0.75 * baseline["average"]["mpjpe"]
    assert result["average"]["p_mpjpe"] < 0.75 * baseline["average"]["p_mpjpe"]
