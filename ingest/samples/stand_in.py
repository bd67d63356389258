"""A generated stand-in for the licensed SMPL-H / SMPL-X body models, for tests and the demo.

No body-model file may be shipped (DESIGN.md), so :func:`write_stand_in` writes files in the SMPL-H and
SMPL-X layouts that ``smplx`` loads, built from scratch: the real kinematic trees (52 and 55 joints,
:data:`ingest.skeleton.SMPLH52` / ``SMPLX55``), rest joints close to SMPL's (metres, SMPL's rest frame:
y up, +x the body's left, +z forward; approximate adult proportions, not fitted to anything), a small mesh
of rings of vertices around every joint and bone with linear-blend-skinning weights, shape blend shapes
(beta 0 scales the body about the pelvis, beta 1 its girth, the others small per-ring changes), small
random pose blend shapes, and a Human3.6M-17 regressor (six vertices around each joint, a ring above the
head for the head top, a ring in front of the face for neck/nose).

Every file carries ``stand_in_body_model = True``; :func:`ingest.body_model.load_body_model` reads it so
everything made with the stand-in says so. Joints it gives are plausible, not a real person's.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ingest.atomic import atomic_path
from ingest.skeleton import H36M17, SMPLH52, SMPLX55, JointSet

RING = 6  # vertices per ring; the regressor takes 6 evenly spaced ones, whose mean is the ring centre
_GENDER_SCALE = {"male": 1.0, "female": 0.93, "neutral": 0.965}

# Rest joints of the body (SMPL rest frame, metres) and the ring radius around each joint.
_BODY_REST = {
    "pelvis": (0.0, -0.223, 0.028, 0.13),
    "left_hip": (0.085, -0.31, 0.02, 0.09),
    "spine1": (0.0, -0.11, 0.0, 0.13),
    "left_knee": (0.1, -0.69, 0.015, 0.055),
    "spine2": (0.0, 0.026, 0.01, 0.13),
    "left_ankle": (0.088, -1.085, -0.027, 0.04),
    "spine3": (0.0, 0.08, 0.03, 0.14),
    "left_foot": (0.115, -1.14, 0.09, 0.03),
    "neck": (0.0, 0.25, -0.015, 0.055),
    "left_collar": (0.078, 0.2, -0.005, 0.06),
    "head": (0.0, 0.33, 0.03, 0.08),
    "left_shoulder": (0.175, 0.2, -0.015, 0.05),
    "left_elbow": (0.43, 0.19, -0.035, 0.04),
    "left_wrist": (0.68, 0.19, -0.04, 0.03),
    "jaw": (0.0, 0.31, 0.05, 0.03),
    "left_eye": (0.032, 0.39, 0.1, 0.012),
}
# Finger base offsets from the wrist (left hand) and the direction of each finger.
_FINGER_BASE = {
    "index": (0.09, -0.005, 0.025),
    "middle": (0.095, -0.005, 0.0),
    "ring": (0.088, -0.008, -0.02),
    "pinky": (0.08, -0.01, -0.04),
    "thumb": (0.025, -0.015, 0.035),
}
_FINGER_DIR = {"thumb": (0.6, -0.2, 0.75)}


def rest_joints(joint_set: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """(J, 3) rest joints (metres, SMPL rest frame) and (J,) ring radii of the male stand-in."""
    joints, radii = np.zeros((len(joint_set), 3)), np.zeros(len(joint_set))
    for j, name in enumerate(joint_set.joints):
        side = -1.0 if name.startswith("right_") else 1.0
        base = "left_" + name[len("right_") :] if name.startswith("right_") else name
        if base in _BODY_REST:
            x, y, z, r = _BODY_REST[base]
        else:  # a finger joint: left_<finger><k>
            finger, k = base[len("left_") : -1], int(base[-1])
            direction = np.array(_FINGER_DIR.get(finger, (1.0, -0.05, 0.0)))
            wrist = np.array(_BODY_REST["left_wrist"][:3])
            x, y, z = wrist + _FINGER_BASE[finger] + 0.03 * (k - 1) * direction / np.linalg.norm(direction)
            r = 0.009
        joints[j] = (side * x, y, z)
        radii[j] = r
    return joints, radii


def _ring(center: np.ndarray, axis: np.ndarray, radius: float, size: int) -> np.ndarray:
    """(size, 3) points evenly spaced on a circle around ``axis`` through ``center``."""
    axis = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    angles = 2 * np.pi * np.arange(size) / size
    return center + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)


class _Mesh:
    """Rings of vertices with skinning weights; records ring centres for the shape blend shapes."""

    def __init__(self, num_joints: int):
        self.num_joints = num_joints
        self.verts: list[np.ndarray] = []
        self.centers: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.rings: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.count = 0

    def add_ring(self, center, axis, radius, size, skin: dict[int, float]) -> np.ndarray:
        idx = np.arange(self.count, self.count + size)
        self.count += size
        self.verts.append(_ring(center, axis, radius, size))
        self.centers.append(np.repeat(center[None], size, axis=0))
        w = np.zeros((size, self.num_joints))
        for j, value in skin.items():
            w[:, j] = value
        self.weights.append(w)
        self.rings.append(idx)
        return idx

    def connect(self, a: np.ndarray, b: np.ndarray) -> None:
        """Triangles between two rings (sizes may differ; indices wrap)."""
        n = max(len(a), len(b))
        for i in range(n):
            a0, a1 = a[i % len(a)], a[(i + 1) % len(a)]
            b0, b1 = b[i % len(b)], b[(i + 1) % len(b)]
            self.faces += [np.array([a0, b0, a1]), np.array([a1, b0, b1])]


def build(joint_set: JointSet, gender: str = "male", ring: int = RING, num_betas: int = 16, seed: int = 0) -> dict:
    """Arrays of one stand-in model in ``smplx``'s file layout.

    Args:
        joint_set: ``SMPLH52`` or ``SMPLX55``.
        gender: scales the whole mesh about the origin (female 0.93, neutral 0.965 of the male).
        ring: vertices per body ring (a multiple of 6); 6 gives a ~500-vertex mesh, about 100 gives the
            size of the real SMPL-H mesh (6890 vertices) for benchmarks.
        num_betas: shape coefficients written.
        seed: random seed of the pose blend shapes and the minor shape coefficients.

    Returns:
        dict with ``v_template`` (V, 3), ``f`` (F, 3), ``J_regressor`` (J, V), ``weights`` (V, J),
        ``kintree_table`` (2, J), ``shapedirs`` (V, 3, num_betas), ``posedirs`` (V, 3, 9 (J - 1)),
        ``h36m_regressor`` (17, V), all float64 / int64, plus ``stand_in_body_model`` True.
    """
    if ring % 6:
        raise ValueError(f"ring size must be a multiple of 6, got {ring}")
    rng = np.random.default_rng(seed)
    joints, radii = rest_joints(joint_set)
    parents = np.array(joint_set.parents)
    num_joints = len(joint_set)
    mesh = _Mesh(num_joints)
    joint_ring = {}
    for j in range(num_joints):
        p = parents[j]
        axis = np.array([0.0, 1.0, 0.0]) if p < 0 else joints[j] - joints[p]
        size = 3 if radii[j] < 0.01 else ring
        skin = {j: 1.0} if p < 0 else {int(p): 0.5, j: 0.5}
        joint_ring[j] = mesh.add_ring(joints[j], axis, radii[j], size, skin)
    for j in range(1, num_joints):
        p = int(parents[j])
        if radii[j] < 0.01:
            mesh.connect(joint_ring[p], joint_ring[j])
            continue
        previous = joint_ring[p]
        for t in (1 / 3, 2 / 3):
            center = joints[p] + t * (joints[j] - joints[p])
            radius = (1 - t) * radii[p] + t * radii[j]
            current = mesh.add_ring(center, joints[j] - joints[p], radius, ring, {p: 1.0})
            mesh.connect(previous, current)
            previous = current
        mesh.connect(previous, joint_ring[j])
    head = joint_set.index("head")
    top = mesh.add_ring(joints[head] + [0, 0.12, 0], np.array([0.0, 1.0, 0.0]), 0.03, ring, {head: 1.0})
    nose = mesh.add_ring(joints[head] + [0, 0.02, 0.075], np.array([0.0, 0.0, 1.0]), 0.015, ring, {head: 1.0})
    mesh.connect(joint_ring[head], top)
    mesh.connect(joint_ring[head], nose)

    scale = _GENDER_SCALE[gender]  # the whole mesh, about the origin
    v_template = scale * np.concatenate(mesh.verts)
    centers = scale * np.concatenate(mesh.centers)
    num_v = len(v_template)
    j_regressor = np.zeros((num_joints, num_v))
    for j, idx in joint_ring.items():
        j_regressor[j, idx] = 1.0 / len(idx)
    shapedirs = np.zeros((num_v, 3, num_betas))
    pelvis = scale * joints[0]
    shapedirs[:, :, 0] = 0.05 * (v_template - pelvis)
    shapedirs[:, :, 1] = 0.15 * (v_template - centers)
    for ring_idx in mesh.rings:
        shapedirs[ring_idx, :, 2:] = (
            0.1 * (v_template[ring_idx] - centers[ring_idx])[:, :, None] * rng.normal(size=(1, 1, num_betas - 2))
        )
    posedirs = 0.0005 * rng.normal(size=(num_v, 3, 9 * (num_joints - 1)))

    h36m = np.zeros((17, num_v))
    picks = {
        "pelvis": joint_ring[0],
        "spine": joint_ring[joint_set.index("spine2")],
        "thorax": joint_ring[joint_set.index("neck")],
        "neck_nose": nose,
        "head": top,
    }
    for name in ("knee", "ankle", "shoulder", "elbow", "wrist", "hip"):
        for side in ("left", "right"):
            picks[f"{side}_{name}"] = joint_ring[joint_set.index(f"{side}_{name}")]
    for h, name in enumerate(H36M17.joints):
        idx = picks[name][:: len(picks[name]) // 6]
        h36m[h, idx] = 1.0 / len(idx)
    kintree = np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(num_joints)]).astype(np.int64)
    return {
        "v_template": v_template,
        "f": np.stack(mesh.faces).astype(np.int64),
        "J_regressor": j_regressor,
        "weights": np.concatenate(mesh.weights),
        "kintree_table": kintree,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "h36m_regressor": h36m,
        "stand_in_body_model": True,
    }


def _smplx_extras(model: dict, rng: np.random.Generator) -> None:
    """MANO hand PCA basis (identity) and mean (small random), which ``smplx`` reads from its own layout's
    files (AMASS's SMPL+H files lack them)."""
    for side in "lr":
        model[f"hands_components{side}"] = np.eye(45)
        model[f"hands_mean{side}"] = 0.1 * rng.normal(size=45)


def _save(path: Path, model: dict, fmt: str) -> None:
    """Write atomically: a temporary file in the same folder, then rename (:func:`ingest.atomic.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if fmt == "pkl":
            pickle.dump(model, fh, protocol=4)
        else:
            np.savez(fh, **model)


def write_stand_in(
    out: Path,
    layouts: tuple[str, ...] = ("amass", "smplx"),
    genders: tuple[str, ...] = ("male", "female", "neutral"),
    ring: int = RING,
    regressors: bool = True,
    model_types: tuple[str, ...] = ("smplh", "smplx"),
) -> list[Path]:
    """Write stand-in SMPL-H and SMPL-X models and their Human3.6M regressors under ``out``.

    Files, per layout: ``"smplx"`` -> ``smplh/SMPLH_<GENDER>.pkl`` and ``smplx/SMPLX_<GENDER>.npz``;
    ``"amass"`` -> ``smplh/<gender>/model.npz`` (without the MANO hand fields, like AMASS's) and
    ``smplx/<gender>/model.npz``. Regressors: ``J_regressor_h36m_stand_in_smplh.npy`` and
    ``..._smplx.npy`` (17 x V of each mesh) in ``out`` when ``regressors``. ``ring``: see :func:`build`;
    ``model_types``: which of ``"smplh"``, ``"smplx"`` to write.

    Returns:
        the written paths.
    """
    out = Path(out)
    written = []
    rng = np.random.default_rng(1)
    for model_type, joint_set in (("smplh", SMPLH52), ("smplx", SMPLX55)):
        if model_type not in model_types:
            continue
        for gender in genders:
            model = build(joint_set, gender, ring=ring)
            h36m = model.pop("h36m_regressor")
            model["f"] = model["f"].astype(np.uint32)
            model = {
                k: v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v
                for k, v in model.items()
            }
            if model_type == "smplx":
                shapedirs = np.zeros((*model["shapedirs"].shape[:2], 400), np.float32)
                shapedirs[..., : model["shapedirs"].shape[2]] = model["shapedirs"]
                shapedirs[..., 300:310] = 0.001 * rng.normal(size=(*shapedirs.shape[:2], 10))
                model["shapedirs"] = shapedirs
                faces = len(model["f"])
                model["lmk_faces_idx"] = rng.integers(0, faces, size=51).astype(np.int64)
                bary = rng.uniform(size=(51, 3))
                model["lmk_bary_coords"] = (bary / bary.sum(axis=1, keepdims=True)).astype(np.float32)
            for layout in layouts:
                if layout == "amass":
                    path = out / model_type / gender / "model.npz"
                    fields = dict(model)
                    if model_type == "smplx":
                        _smplx_extras(fields, rng)
                    _save(path, fields, "npz")
                elif model_type == "smplh":
                    path = out / "smplh" / f"SMPLH_{gender.upper()}.pkl"
                    fields = dict(model)
                    _smplx_extras(fields, rng)
                    _save(path, fields, "pkl")
                else:
                    path = out / "smplx" / f"SMPLX_{gender.upper()}.npz"
                    fields = dict(model)
                    _smplx_extras(fields, rng)
                    _save(path, fields, "npz")
                written.append(path)
        if regressors:
            path = out / f"J_regressor_h36m_stand_in_{model_type}.npy"
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, h36m)
            written.append(path)
    return written
