"""Pose completion under occlusion: masks, and errors of completers whose output is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from finetune_fakes import exact, make_sequence

from finetune.completion import (
    OCCLUSIONS,
    evaluate_completion,
    lifter_completer,
    mpm_completer,
    occlusion_mask,
    training_occlusions,
)
from finetune.model import Lifter
from ingest.skeleton import H36M16, H36M17
from ingest.store import MotionStore
from pretrain.model import MPM, preset

T = 9


@pytest.fixture
def view(tmp_path):
    rng = np.random.default_rng(3)
    store = MotionStore.open(str(tmp_path / "store"))
    store.write_part(
        "h36m",
        "p",
        [
            make_sequence(rng, "S11_Walking_1_a", "S11", "Walking", "test", 25),
            make_sequence(rng, "S11_Eating_1_a", "S11", "Eating", "test", 10),
        ],
    )
    return store["h36m"]


def test_masks():
    rng = np.random.default_rng(0)
    legs = occlusion_mask("2 legs", 3, H36M17, rng)
    assert legs.sum(1).tolist() == [6, 6, 6]
    assert {H36M17.joints[i] for i in np.flatnonzero(legs[0])} == {
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_hip",
        "right_knee",
        "right_ankle",
    }
    side = occlusion_mask("left leg + left arm", 1, H36M16, rng)[0]
    assert all(H36M16.joints[i].startswith("left_") for i in np.flatnonzero(side)) and side.sum() == 6
    two = occlusion_mask("2 joints", 200, H36M17, rng)
    assert (two.sum(1) == 2).all() and (two.sum(0) > 0).all()  # every joint gets drawn at some point
    with pytest.raises(KeyError, match="unknown occlusion"):
        occlusion_mask("3 legs", 1, H36M17, rng)


def test_3d_completion_keeps_visible_joints(view):
    """A completer answering zeros: only the hidden joints are wrong, by their distance from the pelvis."""
    result = evaluate_completion(lambda x, m: torch.zeros(len(x), 17, 3), view, T, H36M17, "3d", patterns=["2 arms"])
    truth = np.concatenate([s.pose3d - s.pose3d[:, :1] for s in view])
    arms = [H36M17.index(f"{s}_{j}") for s in ("left", "right") for j in ("shoulder", "elbow", "wrist")]
    norms = 1000 * np.linalg.norm(truth, axis=-1)
    assert result["2 arms"]["frames"] == 35
    assert result["2 arms"]["mpjpe"] == pytest.approx(norms[:, arms].sum(1).mean() / 17, rel=1e-5)
    assert result["2 arms"]["mpjpe_hidden"] == pytest.approx(norms[:, arms].mean(), rel=1e-5)


def test_2d_completion_of_an_exact_lifter_and_subsampling(view):
    result = evaluate_completion(lambda x, m: exact(x), view, T, H36M17, "2d", every=4)
    assert set(result) == set(OCCLUSIONS)
    assert all(r["mpjpe"] == pytest.approx(0.0, abs=1e-3) for r in result.values())
    assert result["1 joint"]["frames"] == len(range(0, 25, 4)) + len(range(0, 10, 4))
    with pytest.raises(ValueError, match="task"):
        evaluate_completion(lambda x, m: exact(x), view, T, H36M17, "4d")


def test_network_completers_run(view):
    cfg = preset("tiny", joints=17, frames=T)
    mpm = MPM(cfg).eval()
    out = evaluate_completion(mpm_completer(mpm), view, T, H36M17, "3d", patterns=["1 joint"])
    assert out["1 joint"]["mpjpe"] > 0
    lifter = Lifter(cfg).eval()
    out = evaluate_completion(lifter_completer(lifter), view, T, H36M17, "2d", patterns=["2 legs"])
    assert out["2 legs"]["mpjpe"] > 0


def test_training_occlusions_hide_whole_patterns_at_the_given_rate():
    rng = np.random.default_rng(1)
    mask = training_occlusions(4000, H36M17, 0.25, rng)
    hidden_rows = mask.any(1)
    assert abs(hidden_rows.mean() - 0.25) < 0.03
    patterns = {tuple(np.flatnonzero(row)) for row in mask[hidden_rows] if row.sum() > 2}
    assert len(patterns) == 4  # the four limb patterns; rows of 1 or 2 joints are the random ones
    assert not training_occlusions(10, H36M17, 0.0, rng).any()
