"""Pose-error metrics of the 3D human pose literature, in numpy.

Every function takes a prediction and a ground truth of the same shape ``(..., J, 3)`` in one unit
(metres or millimetres) and returns a Python float: the mean over every leading index and joint, in that
unit (``pck`` and ``auc`` return percent). Callers choose root-relative or absolute inputs; the
evaluation protocols (:mod:`finetune.evaluate`) pass root-relative poses.

Definitions follow the VideoPose3D lineage (Pavllo et al. 2019, facebookresearch/VideoPose3D
``common/loss.py``: ``mpjpe``, ``p_mpjpe``, ``n_mpjpe``, ``mean_velocity_error``), which MPM and P-STMO
reuse, and the MPI-INF-3DHP test toolkit (``mpii_compute_3d_pck.m``: PCK at 150 mm and AUC over the
thresholds 0:5:150 mm, a joint counting as correct when its error is strictly below the threshold).
"""

from __future__ import annotations

import numpy as np

from ingest.skeleton import H36M17

PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = np.arange(0.0, 151.0, 5.0)  # 0, 5, ..., 150: 31 thresholds, as mpii_compute_3d_pck.m

# The 14 joints the MPI-INF-3DHP toolkit scores PCK / AUC on (mpii_get_pck_auc_joint_groups.m: head top,
# neck, shoulders, elbows, wrists, hips, knees, ankles of its 17-joint "relevant" set), as Human3.6M-17
# indices. The toolkit's head top is H36M17 "head", its neck is "thorax"; it leaves out pelvis, spine and
# its "head" joint (H36M17 "neck_nose").
MPI_INF_3DHP_PCK_JOINTS = np.array(
    [i for i, name in enumerate(H36M17.joints) if name not in ("pelvis", "spine", "neck_nose")]
)


def _check(predicted: np.ndarray, target: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if predicted.shape != target.shape:
        raise ValueError(f"{name}: prediction shape {predicted.shape} != target shape {target.shape}")
    if predicted.ndim < 2 or predicted.size == 0:
        raise ValueError(f"{name}: expected non-empty arrays of shape (..., J, C), got {predicted.shape}")
    return predicted, target


def joint_errors(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Euclidean distance per joint: (..., J, C) x 2 -> (..., J), same unit as the inputs."""
    predicted, target = _check(predicted, target, "joint_errors")
    return np.linalg.norm(predicted - target, axis=-1)


def mpjpe(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint position error ("Protocol #1"): mean Euclidean distance over all joints and poses.

    Args:
        predicted, target: (..., J, C) arrays in the same unit (C = 3 for 3D; 2D works as well).

    Returns:
        the mean distance, in the inputs' unit.

    Raises:
        ValueError: shapes differ or the arrays are empty.

    Source: VideoPose3D ``common/loss.py`` ``mpjpe``.
    """
    return float(joint_errors(predicted, target).mean())


def procrustes_align(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Align each predicted pose to its target by the similarity transform (rotation, uniform scale,
    translation) that minimises the squared error, with the rotation restricted to a proper one
    (det = +1): a reflected prediction is not mirrored back.

    Args:
        predicted, target: (..., J, 3) arrays, same unit.

    Returns:
        (..., J, 3) aligned prediction.

    Source: VideoPose3D ``common/loss.py`` ``p_mpjpe`` (orthogonal Procrustes by SVD, Umeyama's scale,
    "avoid improper rotations" fix flipping the sign of the last singular vector when det(R) < 0).
    """
    predicted, target = _check(predicted, target, "procrustes_align")
    shape = predicted.shape
    y = predicted.reshape(-1, shape[-2], shape[-1])
    x = target.reshape(-1, shape[-2], shape[-1])
    mu_x = x.mean(axis=1, keepdims=True)
    mu_y = y.mean(axis=1, keepdims=True)
    x0, y0 = x - mu_x, y - mu_y
    norm_x = np.sqrt((x0**2).sum(axis=(1, 2), keepdims=True))
    norm_y = np.sqrt((y0**2).sum(axis=(1, 2), keepdims=True))
    norm_x = np.where(norm_x > 0, norm_x, 1.0)
    norm_y = np.where(norm_y > 0, norm_y, 1.0)
    x0, y0 = x0 / norm_x, y0 / norm_y
    u, s, vt = np.linalg.svd(np.swapaxes(x0, 1, 2) @ y0)
    v = np.swapaxes(vt, 1, 2)
    sign = np.sign(np.linalg.det(v @ np.swapaxes(u, 1, 2)))
    sign = np.where(sign == 0, 1.0, sign)
    v[:, :, -1] *= sign[:, None]
    s[:, -1] *= sign
    rotation = v @ np.swapaxes(u, 1, 2)  # applied on the right: y @ rotation
    scale = s.sum(axis=1)[:, None, None] * norm_x / norm_y
    translation = mu_x - scale * (mu_y @ rotation)
    return (scale * (y @ rotation) + translation).reshape(shape)


def p_mpjpe(predicted: np.ndarray, target: np.ndarray) -> float:
    """MPJPE after per-pose Procrustes alignment ("Protocol #2", P-MPJPE): see :func:`procrustes_align`.

    Args:
        predicted, target: (..., J, 3) arrays, same unit; each (J, 3) slice is one pose.

    Returns:
        the mean aligned distance, in the inputs' unit. A mirror image of the target is aligned by a proper
        rotation only and so keeps a non-zero error (VideoPose3D's reflection fix).
    """
    return mpjpe(procrustes_align(predicted, target), target)


def n_mpjpe(predicted: np.ndarray, target: np.ndarray) -> float:
    """MPJPE after the per-pose scale that best fits the prediction to the target (least squares,
    ``s = <target, predicted> / <predicted, predicted>`` over the pose's joints), no rotation or translation.

    Args:
        predicted, target: (..., J, 3) arrays, same unit.

    Source: VideoPose3D ``common/loss.py`` ``n_mpjpe`` (after Rhodin et al. 2018).
    """
    predicted, target = _check(predicted, target, "n_mpjpe")
    num = (target * predicted).sum(axis=(-2, -1), keepdims=True)
    den = (predicted * predicted).sum(axis=(-2, -1), keepdims=True)
    scale = num / np.where(den > 0, den, 1.0)
    return mpjpe(scale * predicted, target)


def mpjve(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint velocity error: MPJPE of the first temporal differences (per frame, not per second).

    Args:
        predicted, target: (..., T, J, 3) arrays, same unit, time on axis -3, T >= 2 consecutive frames.

    Source: VideoPose3D ``common/loss.py`` ``mean_velocity_error``.
    """
    predicted, target = _check(predicted, target, "mpjve")
    if predicted.ndim < 3 or predicted.shape[-3] < 2:
        raise ValueError(f"mpjve: need (..., T, J, C) with T >= 2 frames, got {predicted.shape}")
    return mpjpe(np.diff(predicted, axis=-3), np.diff(target, axis=-3))


def pck(
    predicted_mm: np.ndarray,
    target_mm: np.ndarray,
    threshold_mm: float = PCK_THRESHOLD_MM,
    joints: np.ndarray | None = None,
) -> float:
    """Percentage of correct keypoints in 3D: share of joint errors strictly below ``threshold_mm``.

    Args:
        predicted_mm, target_mm: (..., J, 3) arrays in millimetres.
        threshold_mm: 150 mm by default (MPI-INF-3DHP toolkit).
        joints: indices of the joints to score (e.g. :data:`MPI_INF_3DHP_PCK_JOINTS`); all when None.

    Returns:
        percent, 0..100.

    Source: MPI-INF-3DHP toolkit ``mpii_compute_3d_pck.m`` (``error < pck_thresh``); the toolkit's total is
    the joint-count-weighted mean over joint groups, i.e. the share over all scored joints and frames.
    """
    errors = joint_errors(predicted_mm, target_mm)
    if joints is not None:
        errors = errors[..., np.asarray(joints)]
    return float(100.0 * (errors < threshold_mm).mean())


def auc(
    predicted_mm: np.ndarray,
    target_mm: np.ndarray,
    thresholds_mm: np.ndarray = AUC_THRESHOLDS_MM,
    joints: np.ndarray | None = None,
) -> float:
    """Area under the PCK curve: the mean of :func:`pck` over ``thresholds_mm`` (0, 5, ..., 150 mm).

    Args:
        predicted_mm, target_mm: (..., J, 3) arrays in millimetres.
        thresholds_mm: 1-D thresholds; the toolkit's 0:5:150 by default.
        joints: as in :func:`pck`.

    Returns:
        percent, 0..100.

    Source: MPI-INF-3DHP toolkit ``mpii_compute_3d_pck.m`` (``100 * sum(pck_curve) / length(thresh)``).
    """
    errors = joint_errors(predicted_mm, target_mm)
    if joints is not None:
        errors = errors[..., np.asarray(joints)]
    thresholds = np.asarray(thresholds_mm, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(f"auc: thresholds must be a non-empty 1-D array, got shape {thresholds.shape}")
    return float(100.0 * (errors[..., None] < thresholds).mean())
