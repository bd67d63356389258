"""Sample AMASS data for ``python -m ingest samples OUT``: small motions in both AMASS releases' npz
layouts under ``OUT/amass/`` and the stand-in body model (:mod:`ingest.samples.stand_in`) under
``OUT/body_models/``; convert them with ``python -m ingest amass OUT/amass --store STORE --body-models
OUT/body_models``.

Motions are a walk around a circle built from smooth sinusoidal joint rotations (hip and knee flexion,
arm swing, a little torso twist), in AMASS's conventions: world z up, ``trans`` the root translation in
metres, the root rotation turning SMPL's y-up rest frame upright and facing along the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ingest.atomic import atomic_path
from ingest.body_model import JOINT_SET
from ingest.samples.stand_in import write_stand_in


def walking_poses(frames: int, fps: float, model_type: str = "smplh", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A walk around a circle, as AMASS pose parameters.

    Args:
        frames: N. fps: frame rate the motion is sampled at (Hz). model_type: ``"smplh"`` (52 joints) or
        ``"smplx"`` (55). seed: varies gait frequency (0.8-1.1 Hz), amplitudes, radius (1-1.8 m), phase.

    Returns:
        full pose (N, J, 3) axis-angle radians in ``smplx`` joint order, and trans (N, 3) metres, z up.
    """
    rng = np.random.default_rng(seed)
    joint_set = JOINT_SET[model_type]
    freq, radius, phase0 = rng.uniform(0.8, 1.1), rng.uniform(1.0, 1.8), rng.uniform(0, 2 * np.pi)
    hip, knee, arm = rng.uniform(0.35, 0.5), rng.uniform(0.6, 0.9), rng.uniform(0.25, 0.4)
    t = np.arange(frames) / fps
    phase = 2 * np.pi * freq * t
    pose = np.zeros((frames, len(joint_set), 3))
    j = joint_set.index
    for side, sign in (("left", 1.0), ("right", -1.0)):
        swing = np.sin(phase + (0 if side == "left" else np.pi))
        pose[:, j(f"{side}_hip"), 0] = -hip * swing  # SMPL rest frame: -x rotation swings the leg forward
        pose[:, j(f"{side}_knee"), 0] = (
            knee * np.clip(np.sin(phase + (0 if side == "left" else np.pi) + 1.2), 0, None) + 0.05
        )
        down = Rotation.from_rotvec([0, 0, -sign * 1.2])  # arm from the T pose down along the body
        swing_arm = Rotation.from_rotvec(np.stack([arm * swing, 0 * swing, 0 * swing], axis=1))
        pose[:, j(f"{side}_shoulder")] = (swing_arm * down).as_rotvec()
        pose[:, j(f"{side}_elbow"), 1] = -sign * 0.3  # forearm forward
    pose[:, j("spine1"), 1] = 0.1 * np.sin(phase)
    # Heading along the circle's tangent; root = heading yaw (about world z) after SMPL y-up -> z-up.
    angle = phase0 + 2 * np.pi * freq * t * 1.2 / (2 * np.pi * radius)  # ~1.2 m per gait cycle
    upright = Rotation.from_euler("x", 90, degrees=True)
    pose[:, 0] = (Rotation.from_euler("z", (angle + np.pi / 2)[:, None]) * upright).as_rotvec()
    trans = np.stack([radius * np.sin(angle), -radius * np.cos(angle), 0.95 + 0.02 * np.cos(2 * phase)], axis=1)
    return pose, trans


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def smplh_g_arrays(frames: int, fps: float, gender: str = "male", seed: int = 0) -> dict:
    """Arrays of a "SMPL+H G" file: poses (N, 156), trans, betas (16,), gender, mocap_framerate, dmpls."""
    pose, trans = walking_poses(frames, fps, "smplh", seed)
    rng = np.random.default_rng(seed + 100)
    return {
        "poses": pose.reshape(frames, -1),
        "trans": trans,
        "betas": rng.normal(scale=0.8, size=16),
        "gender": np.array(gender),
        "mocap_framerate": np.array(float(fps)),
        "dmpls": 0.1 * rng.normal(size=(frames, 8)),
    }


def smplx_n_arrays(frames: int, fps: float, gender: str = "neutral", seed: int = 0) -> dict:
    """Arrays of a "SMPL-X N" file: poses (N, 165) and the split keys, trans, betas, num_betas, gender,
    mocap_frame_rate, surface_model_type."""
    pose, trans = walking_poses(frames, fps, "smplx", seed)
    flat = pose.reshape(frames, -1)
    rng = np.random.default_rng(seed + 100)
    return {
        "poses": flat,
        "root_orient": flat[:, :3],
        "pose_body": flat[:, 3:66],
        "pose_jaw": flat[:, 66:69],
        "pose_eye": flat[:, 69:75],
        "pose_hand": flat[:, 75:],
        "trans": trans,
        "betas": rng.normal(scale=0.8, size=16),
        "num_betas": np.array(16),
        "gender": np.array(gender),
        "mocap_frame_rate": np.array(float(fps)),
        "surface_model_type": np.array("smplx"),
    }


def write(out: Path) -> None:
    """Write ``out/amass/`` (two SMPL+H G motions, one SMPL-X N motion, one shape-only file) and the
    stand-in body model in AMASS's layout (``smplh/<gender>/model.npz``, ...) in ``out/body_models/``."""
    amass = Path(out) / "amass"
    _save_npz(amass / "SampleH" / "s01" / "walk_01_poses.npz", **smplh_g_arrays(360, 120.0, "male", seed=1))
    _save_npz(amass / "SampleH" / "s02" / "walk_02_poses.npz", **smplh_g_arrays(200, 100.0, "female", seed=2))
    _save_npz(amass / "SampleX" / "s03" / "walk_03_stageii.npz", **smplx_n_arrays(180, 60.0, "neutral", seed=3))
    _save_npz(amass / "SampleH" / "s01" / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    write_stand_in(Path(out) / "body_models", layouts=("amass",))
