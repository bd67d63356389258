"""finetune.metrics against hand-computed values and a second, independent alignment (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from finetune.metrics import (
    AUC_THRESHOLDS_MM,
    MPI_INF_3DHP_PCK_JOINTS,
    auc,
    mpjpe,
    mpjve,
    n_mpjpe,
    p_mpjpe,
    pck,
)
from ingest.skeleton import H36M17


def _poses(rng: np.random.Generator, n: int = 8, joints: int = 17) -> np.ndarray:
    """Random non-planar poses, metres, root roughly at the origin."""
    return rng.normal(scale=0.3, size=(n, joints, 3))


def _scipy_procrustes_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Independent Protocol #2: best proper rotation from scipy's Kabsch solver, then the least-squares
    scale for that rotation, after centring both poses."""
    errors = []
    for y, x in zip(pred, target, strict=True):
        x0, y0 = x - x.mean(0), y - y.mean(0)
        rot, _ = Rotation.align_vectors(x0, y0)
        ry = rot.apply(y0)
        scale = (x0 * ry).sum() / (ry * ry).sum()
        errors.append(np.linalg.norm(scale * ry - x0, axis=-1).mean())
    return float(np.mean(errors))


def test_mpjpe_hand_computed():
    target = np.zeros((2, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]]])
    assert mpjpe(pred, target) == pytest.approx((5 + 0 + 1 + 2) / 4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        mpjpe(np.zeros((3, 17, 3)), np.zeros((3, 16, 3)))


def test_similarity_transform_has_zero_p_mpjpe_but_not_mpjpe():
    rng = np.random.default_rng(0)
    target = _poses(rng)
    rot = Rotation.random(len(target), random_state=1).as_matrix()
    pred = 1.7 * np.einsum("nij,nkj->nki", rot, target) + rng.normal(size=(len(target), 1, 3))
    assert mpjpe(pred, target) > 0.1
    assert p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-9)


def test_p_mpjpe_matches_independent_alignment_on_noisy_predictions():
    rng = np.random.default_rng(2)
    target = _poses(rng)
    pred = target @ Rotation.random(random_state=3).as_matrix().T * 0.8 + rng.normal(scale=0.05, size=target.shape)
    expected = _scipy_procrustes_error(pred, target)
    assert p_mpjpe(pred, target) == pytest.approx(expected, rel=1e-6)
    assert p_mpjpe(pred, target) < mpjpe(pred, target)


def test_reflected_prediction_is_not_mirrored_back():
    """VideoPose3D's fix allows proper rotations only: a mirror image keeps an error, the one of the best
    proper similarity transform."""
    rng = np.random.default_rng(4)
    target = _poses(rng)
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    err = p_mpjpe(mirrored, target)
    assert err > 0.05
    assert err == pytest.approx(_scipy_procrustes_error(mirrored, target), rel=1e-6)


def test_p_mpjpe_flattens_leading_axes():
    rng = np.random.default_rng(5)
    target = _poses(rng, n=6)
    pred = target + rng.normal(scale=0.1, size=target.shape)
    assert p_mpjpe(pred.reshape(2, 3, 17, 3), target.reshape(2, 3, 17, 3)) == pytest.approx(p_mpjpe(pred, target))


def test_n_mpjpe_removes_scale_only():
    rng = np.random.default_rng(6)
    target = _poses(rng)
    assert n_mpjpe(0.5 * target, target) == pytest.approx(0.0, abs=1e-12)
    assert mpjpe(0.5 * target, target) == pytest.approx(0.5 * np.linalg.norm(target, axis=-1).mean())
    # A translated prediction is not helped by translation, only by the least-squares scale.
    pred = 1.3 * target + np.array([0.1, 0.0, 0.0])
    scale = np.array(
        [np.linalg.lstsq(p.reshape(-1, 1), t.reshape(-1), rcond=None)[0][0] for p, t in zip(pred, target, strict=True)]
    )
    expected = np.linalg.norm(scale[:, None, None] * pred - target, axis=-1).mean()
    assert n_mpjpe(pred, target) == pytest.approx(expected)
    assert n_mpjpe(pred, target) > 0.01


def test_mpjve_constant_offset_and_linear_drift():
    rng = np.random.default_rng(7)
    target = _poses(rng, n=20)  # (T, J, 3)
    assert mpjve(target + np.array([0.3, -0.2, 1.0]), target) == pytest.approx(0.0, abs=1e-12)
    drift = np.arange(20)[:, None, None] * np.array([0.003, 0.004, 0.0])  # 5 mm per frame
    assert mpjve(target + drift, target) == pytest.approx(0.005)
    assert mpjve(np.stack([target + drift, target]), np.stack([target, target])) == pytest.approx(0.0025)
    with pytest.raises(ValueError, match="T >= 2"):
        mpjve(target[:1], target[:1])


def test_pck_and_auc_hand_computed():
    # Joint errors 0, 40, 100, 149, 150, 200 mm along x.
    errors = np.array([0.0, 40.0, 100.0, 149.0, 150.0, 200.0])
    target = np.zeros((1, 6, 3))
    pred = np.zeros((1, 6, 3))
    pred[0, :, 0] = errors
    assert pck(pred, target) == pytest.approx(100 * 4 / 6)  # 150 is not strictly below 150
    assert pck(pred, target, threshold_mm=100.0) == pytest.approx(100 * 2 / 6)
    # Thresholds 0..150 step 5 (31): each error counts for the thresholds strictly above it:
    # 0 -> 30, 40 -> 22, 100 -> 10, 149 -> 1, 150 -> 0, 200 -> 0.
    assert len(AUC_THRESHOLDS_MM) == 31
    assert auc(pred, target) == pytest.approx(100 * 63 / (31 * 6))
    assert pck(pred, target, joints=[0, 5]) == pytest.approx(50.0)
    assert auc(pred, target, joints=[4, 5]) == pytest.approx(0.0)


def test_official_pck_joint_set():
    names = [H36M17.joints[i] for i in MPI_INF_3DHP_PCK_JOINTS]
    assert len(names) == 14
    assert {"pelvis", "spine", "neck_nose"}.isdisjoint(names)
    assert {"head", "thorax", "left_wrist", "right_ankle"} <= set(names)
