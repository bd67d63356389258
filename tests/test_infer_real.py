"""Lifting in the wild on real Human3.6M (POSEMILL_REAL_DATA): a small lifter trained on S1 lifts S11 frames
written in every detector layout back to 3D (experiments.wild, through the python -m finetune.infer command).

Independent expectations: the plain Human3.6M-17 array must give exactly what the evaluation gives on the same
frames from the store (:func:`finetune.evaluate.predict_store_sequence`); layouts with the same joint set must
give the same 3D; and every layout must come within the lifter's own error plus 10 mm (issue 21)."""

from __future__ import annotations

import pytest
from finetune_fakes import one_rank_env

from experiments import wild
from finetune.checkpoint import load_lifter
from finetune.config import FinetuneConfig
from finetune.evaluate import predict_store_sequence
from finetune.metrics import mpjpe
from finetune.train import train
from ingest.h36m import H36MReader
from ingest.job import run_ingest
from shards.writer import build
from training.settings import build as build_config

FRAMES = 9
SECONDS = 4.0


@pytest.fixture(scope="module")
def s1_lifter(real_data, tmp_path_factory, ray_local):
    if not (real_data / "h36m" / "S11").is_dir():
        pytest.skip(f"{real_data / 'h36m'} lacks S11")
    root = tmp_path_factory.mktemp("wild")
    run_ingest(H36MReader(subjects=("S1",)), real_data / "h36m", str(root / "store"), progress=False)
    build(str(root / "store"), root / "shards", clip_len=FRAMES, progress=False)
    cfg = {
        "model": {"preset": "tiny", "frames": FRAMES},
        "data": {"shards": str(root / "shards"), "batch_size": 128},
        "train": {"out": str(root / "ft"), "lr": 3e-3, "max_steps": 300, "log_every": 100},
        "evaluate": False,
    }
    with one_rank_env():
        train(build_config(FinetuneConfig, cfg), progress=False)
    return root / "ft" / "lifter.pt"


@pytest.mark.real_data
def test_every_detector_layout_lifts_s11_back_within_the_lifters_own_error(real_data, s1_lifter, tmp_path):
    rows = wild.main(
        [str(real_data), "--checkpoint", str(s1_lifter), "--out", str(tmp_path), "--seconds", str(SECONDS)]
    )
    rows = {name: r["mpjpe"] for name, r in rows["rows"].items()}
    print(rows)

    lifter, _ = load_lifter(s1_lifter)
    seq = wild.read_take(real_data, "S11", "Walking 1", "54138969", SECONDS)
    pred, truth = predict_store_sequence(lifter, seq, lifter.frames, lifter.joint_set, flip=True)
    own = mpjpe(pred, truth)
    assert rows["npy-h36m17"] == pytest.approx(own, abs=0.01)  # the command feeds what the evaluation feeds
    assert own < 120.0  # a lifter that learned something

    coco = ["coco-annotations", "coco-results", "mmpose", "alphapose-coco17", "videopose3d"]
    assert max(rows[n] for n in coco) - min(rows[n] for n in coco) < 0.01  # one joint set, one answer
    assert abs(rows["alphapose-halpe26"] - rows["openpose-body25"]) < 0.01  # pelvis, thorax, head all detected
    for name, error in rows.items():
        assert error < own + 10.0, name
