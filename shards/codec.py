"""The sample codec: how a store sequence becomes a training or evaluation sample, and back. Written once and
used by the shard writer (:mod:`shards.writer`), the streaming loader (:mod:`shards.stream`), evaluation and
completion (:mod:`finetune.windows`, :mod:`finetune.evaluate`, :mod:`finetune.completion`), so a window
streamed for training and the same frames cut for evaluation are bit-identical (``tests/test_codec.py``).

Conventions (DESIGN.md, "Canonical conventions"; VideoPose3D ``common/camera.py`` keeps each normalisation
beside its inverse, as this module does):

* **2D** (pixels -> normalised image coordinates): ``x / w * 2 - [1, h / w]`` (VideoPose3D / MotionBERT
  ``normalize_screen_coordinates``), so x spans [-1, 1], y keeps the aspect ratio and the image's vertical
  midline is x = 0 (a horizontal flip is x -> -x). Shards hold 2D already normalised (float32 of the float64
  result), the confidence channel unchanged.
* **3D**: metres, camera coordinates (x right, y down, z forward), root-relative (joint 0, the pelvis, at
  the origin); the pelvis itself is kept apart (``root``), so absolute = root-relative + root.
* **2.5D "image frame" 3D** (``normalize_3d``): root-relative 3D times ``f_x / Z_root * 2 / w``, the 2D
  normalised units at the pelvis depth (VideoPose3D ``camera_to_image_frame`` / MotionBERT), so its x, y
  match the 2D scale.
* **Camera** (``normalize_camera``): the pinhole intrinsics in the 2D's normalised units, ``f / w * 2`` and
  ``c / w * 2 - [1, h / w]`` (P-STMO / MPM ``common/h36m_dataset.py``), so that back-projecting a normalised
  2D point at depth Z, ``(u - c) * Z / f``, gives metres as the pixel formula does; a flip negates ``c_x``.
* **Invalid frames** (the store's ``valid`` mask where a dataset has one, and any frame with a non-finite
  value) hold zeros, and the sample says which they are.
* **Joints**: the store holds Human3.6M-17; a network reads H36M17 or H36M16 (neck/nose dropped, MPM).
* **Flip**: left and right joints swapped (``JointSet.flip_permutation``) and x negated: in normalised 2D
  that mirrors the image, in camera 3D the scene.
* **Padding**: by edge replication (``np.pad(..., mode="edge")``, as the reference generators'
  ``ChunkedGenerator``), the padded frames marked invalid where the sample carries masks.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from ingest.skeleton import H36M16, H36M17, H36M17_TO_16, JointSet
from ingest.store import Sequence

Array = TypeVar("Array", np.ndarray, torch.Tensor)

JOINT_SETS = {17: H36M17, 16: H36M16}  # the joint sets a network reads, by joint count


def joint_set(joints: int) -> JointSet:
    """H36M17 or H36M16 by joint count; raises ValueError for any other count."""
    if joints not in JOINT_SETS:
        raise ValueError(f"networks read 17 (h36m17) or 16 (h36m16) joints, not {joints}")
    return JOINT_SETS[joints]


def select_joints(x: np.ndarray, target: JointSet) -> np.ndarray:
    """(..., 17, C) Human3.6M-17 arrays -> the joints of ``target`` (H36M17: unchanged; H36M16: neck/nose
    dropped, :data:`ingest.skeleton.H36M17_TO_16`). Raises ValueError for other joint sets."""
    if target is H36M17:
        return x
    if target is H36M16:
        return x[..., H36M17_TO_16, :]
    raise ValueError(f"samples hold joint sets h36m17 or h36m16, not {target.name!r}")


def normalize_2d(pose2d: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels -> normalised image coordinates ``x / w * 2 - [1, h / w]`` (module docstring).

    Args:
        pose2d: (..., J, >=2) pixel coordinates (channels after x, y, e.g. a confidence, are ignored).
        width, height: image size in pixels.

    Returns:
        (..., J, 2) normalised x, y, in the input's floating dtype (float64 for integer input).
    """
    xy = np.asarray(pose2d)[..., :2]
    dtype = xy.dtype if np.issubdtype(xy.dtype, np.floating) else np.float64
    return (xy / width * 2 - np.array([1.0, height / width])).astype(dtype, copy=False)


def denormalize_2d(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    """The inverse of :func:`normalize_2d`: (..., J, >=2) normalised x, y -> (..., J, 2) pixels
    (VideoPose3D ``image_coordinates``)."""
    xy = np.asarray(xy)[..., :2]
    return (xy + np.array([1.0, height / width])) * width / 2


def _bad_frames(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(n,) bool: frames marked invalid or holding any non-finite value."""
    bad = ~np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
    return bad if valid is None else bad | ~np.asarray(valid, bool)


def encode_2d(
    pose2d: np.ndarray,
    width: float,
    height: float,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The 2D of a sample: normalised x, y (float64) and the other channels unchanged, invalid frames zero.

    Args:
        pose2d: (n, J, C >= 2) pixels (and, from C = 3, the confidence), any float dtype.
        width, height: image size in pixels, both positive.
        valid: (n,) bool frame mask, or None (every frame valid unless non-finite).

    Returns:
        (n, J, C) float64, and the (n,) bool mask of invalid frames.

    Raises:
        ValueError: a non-positive image size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width} x {height} must be positive")
    out = np.array(pose2d, dtype=np.float64)
    out[..., :2] = normalize_2d(out, width, height)
    bad = _bad_frames(out, valid)
    out[bad] = 0.0
    return out, bad


def encode_3d(pose3d: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 3D of a sample: root-relative pose and root, metres in camera coordinates, invalid frames zero.

    Args:
        pose3d: (n, J, 3) metres, camera coordinates, joint 0 the pelvis.
        valid: (n,) bool frame mask, or None (every frame valid unless non-finite).

    Returns:
        (root-relative (n, J, 3) float64, root (n, 3) float64, (n,) bool invalid frames).
    """
    p3 = np.array(pose3d, dtype=np.float64)
    bad = _bad_frames(p3, valid)
    p3[bad] = 0.0
    return p3 - p3[:, :1], p3[:, 0].copy(), bad


def normalize_camera(f, c, width: float, height: float) -> np.ndarray:
    """Pinhole intrinsics in pixels -> the 2D's normalised units (module docstring): (4,) float64
    ``[f_x, f_y, c_x, c_y]`` with ``f / w * 2`` and ``c / w * 2 - [1, h / w]`` (P-STMO / MPM
    ``common/h36m_dataset.py``: ``cam['focal_length'] / res_w * 2``, ``normalize_screen_coordinates(center)``).

    Args:
        f, c: focal lengths and principal point (2,) in pixels (a sequence's metadata ``f`` and ``c``).
        width, height: image size in pixels.
    """
    f, c = np.asarray(f, np.float64).reshape(2), np.asarray(c, np.float64).reshape(2)
    return np.concatenate([f / width * 2, c / width * 2 - np.array([1.0, height / width])])


def image_frame_scale(root_z: np.ndarray, f_x: float, width: float) -> np.ndarray:
    """(n,) factor ``f_x / Z_root * 2 / w`` from root-relative metres to the 2.5D image frame (module
    docstring); 0 where the root depth is not positive (invalid frames)."""
    z = np.asarray(root_z)
    return np.where(z > 0, f_x / np.where(z > 0, z, 1.0), 0.0) * 2 / width


def normalize_3d(rel: np.ndarray, root_z: np.ndarray, f_x: float, width: float) -> np.ndarray:
    """Root-relative 3D (n, J, 3) metres -> the 2.5D image frame, in ``rel``'s dtype (module docstring)."""
    scale = image_frame_scale(root_z, f_x, width)
    return (rel * scale[:, None, None].astype(rel.dtype)).astype(rel.dtype, copy=False)


def denormalize_3d(norm: np.ndarray, root_z: np.ndarray, f_x: float, width: float) -> np.ndarray:
    """The inverse of :func:`normalize_3d` (frames with a non-positive root depth give 0)."""
    scale = image_frame_scale(root_z, f_x, width)
    return np.where(scale[:, None, None] > 0, norm / np.where(scale > 0, scale, 1.0)[:, None, None], 0.0)


def flip(x: Array, target: JointSet) -> Array:
    """Mirror poses (..., J, C >= 1) of ``target``'s joints: left/right joints swapped, x negated (normalised
    2D: the mirrored image; camera 3D: the mirrored scene). A new array or tensor, same type as ``x``."""
    perm = target.flip_permutation()
    out = x[..., torch.as_tensor(perm, device=x.device) if isinstance(x, torch.Tensor) else perm, :]
    out[..., 0] = -out[..., 0]
    return out


def pad_edge(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """(n, ...) -> (before + n + after, ...) by repeating the first and last frame."""
    return np.pad(x, [(before, after)] + [(0, 0)] * (x.ndim - 1), mode="edge")


def frame_mask(seq: Sequence) -> np.ndarray | None:
    """The store sequence's (N,) bool ``valid`` frame mask, or None when its dataset has none."""
    return np.asarray(seq.frames["valid"], bool) if "valid" in seq.frames else None


def sequence_input_2d(seq: Sequence, target: JointSet) -> np.ndarray:
    """The lifter's 2D input for a whole store sequence: (N, J, 2) float32 normalised x, y of ``target``'s
    joints, invalid frames zero: :func:`encode_2d` as the shard writer applies it, then float32, so it equals
    the streamed training windows of the same frames bit for bit."""
    pose2d, _ = encode_2d(seq.pose2d, float(seq.meta["width"]), float(seq.meta["height"]), frame_mask(seq))
    return select_joints(pose2d[..., :2], target).astype(np.float32)


def sequence_truth_3d(seq: Sequence, target: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """The 3D ground truth of a whole store sequence: (root-relative (N, J, 3) float64 metres in camera
    coordinates of ``target``'s joints, invalid frames zero; (N,) bool invalid frames), by :func:`encode_3d`."""
    rel, _, bad = encode_3d(seq.pose3d, frame_mask(seq))
    return select_joints(rel, target), bad
