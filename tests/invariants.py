"""Independent expectations the tests compare the code with: closed forms and invariants written apart from
the code they check."""

from __future__ import annotations

import numpy as np

from ingest.skeleton import H36M17, JointSet


def bone_lengths(joints: np.ndarray, joint_set: JointSet = H36M17) -> np.ndarray:
    """Euclidean bone lengths: (..., J, 3) -> (..., J - 1), same unit as ``joints``, bone order of
    :attr:`JointSet.bones` (a rigid skeleton keeps them constant over frames and cameras)."""
    parents, children = zip(*joint_set.bones, strict=True)
    return np.linalg.norm(joints[..., list(children), :] - joints[..., list(parents), :], axis=-1)


def sequence_windows(n: int, clip_len: int, stride: int = 1) -> int:
    """Windows of a whole sequence of ``n`` frames, in closed form: ``(n - T) // s + 1``, or 1 (padded) when
    ``n < T`` (the shards count them segment by segment)."""
    return (n - clip_len) // stride + 1 if n >= clip_len else 1
