"""SMPL-H / SMPL-X body models loaded with ``smplx``, and their Human3.6M-17 joint regression.

Loading (:func:`load_body_model`) accepts the two layouts people have under one ``--body-models`` folder:

- ``smplx``'s own: ``smplh/SMPLH_MALE.pkl`` (or ``.npz``), ``smplx/SMPLX_NEUTRAL.npz`` (or ``.pkl``);
- AMASS's (the "Extended SMPL+H model" and AMASS body-model downloads): ``smplh/male/model.npz``,
  ``smplx/neutral/model.npz``. AMASS's SMPL+H files lack the MANO hand PCA fields that ``smplx.SMPLH``
  reads; they are filled with an identity basis and a zero mean, which changes nothing because AMASS
  poses are full axis-angle hand poses around the flat hand (``use_pca=False, flat_hand_mean=True``).

``smplx`` keeps only 10 shape coefficients of a model with fewer than 300 (``SMPL.__init__``), while
AMASS fits use 16 with the SMPL+H model (``human_body_prior`` ``BodyModel(num_betas=16)``); SMPL-H models
are therefore loaded with every shape coefficient their file has.

Joint regression to Human3.6M-17 (:class:`Regressor`): a 17 x V vertex regressor (e.g. MeshTransformer's
``J_regressor_h36m_correct.npy`` for the 6890-vertex SMPL / SMPL-H mesh), found as ``--regressor`` or as a
``J_regressor_h36m*.npy`` file in the body-models folder whose column count matches the mesh; for SMPL-X
without such a file, :func:`smplx_joint_mapping` combines the model's own 55 joints.

:class:`BodyModel` computes the regressed joints two ways: :meth:`BodyModel.joints_full` (``smplx`` forward
pass on the whole mesh, then the regressor) and :meth:`BodyModel.joints_fast` (linear blend skinning of the
vertices the regressor touches only, the same formulas as ``smplx.lbs.lbs``). Both run in float64 on the
model's own buffers and agree to ~1e-12 m. Frames: the body model's world (AMASS: z up), metres.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints

from ingest.skeleton import H36M17, SMPLH52, SMPLX55
from ingest.untrusted import load_npz, load_pickle

MODEL_TYPES = ("smplh", "smplx")
GENDERS = ("male", "female", "neutral")
DTYPE = torch.float64

JOINT_SET = {"smplh": SMPLH52, "smplx": SMPLX55}


def smplx_joint_mapping() -> np.ndarray:
    """(17, 55) float64 weights giving Human3.6M-17 joints from SMPL-X's 55 posed joints.

    Posemill's own approximation, used only for SMPL-X when no 10475-column vertex regressor is given:
    each Human3.6M joint is the nearest SMPL-X joint (pelvis, hips, knees, ankles, shoulders, elbows,
    wrists; spine <- spine2, thorax <- neck), except neck/nose = head joint and eye midpoint averaged
    (``0.5 head + 0.25 left_eye + 0.25 right_eye``) and head (top of head in Human3.6M) extrapolated one
    neck-to-head length above the head joint (``2 head - neck``). Every row sums to 1, so the mapping
    commutes with translation.
    """
    j = SMPLX55.index
    rows = {
        "pelvis": {"pelvis": 1.0},
        "right_hip": {"right_hip": 1.0},
        "right_knee": {"right_knee": 1.0},
        "right_ankle": {"right_ankle": 1.0},
        "left_hip": {"left_hip": 1.0},
        "left_knee": {"left_knee": 1.0},
        "left_ankle": {"left_ankle": 1.0},
        "spine": {"spine2": 1.0},
        "thorax": {"neck": 1.0},
        "neck_nose": {"head": 0.5, "left_eye": 0.25, "right_eye": 0.25},
        "head": {"head": 2.0, "neck": -1.0},
        "left_shoulder": {"left_shoulder": 1.0},
        "left_elbow": {"left_elbow": 1.0},
        "left_wrist": {"left_wrist": 1.0},
        "right_shoulder": {"right_shoulder": 1.0},
        "right_elbow": {"right_elbow": 1.0},
        "right_wrist": {"right_wrist": 1.0},
    }
    weights = np.zeros((17, len(SMPLX55)))
    for h, name in enumerate(H36M17.joints):
        for joint, w in rows[name].items():
            weights[h, j(joint)] = w
    return weights


@dataclass(frozen=True)
class Regressor:
    """Human3.6M-17 joints as weighted sums of mesh vertices or of the model's posed joints.

    Attributes:
        weights: (17, V) on vertices or (17, J) on joints, float64.
        kind: ``"vertices"`` or ``"joints"``.
        source: the regressor file, or ``"smplx_joint_mapping"``.
    """

    weights: np.ndarray
    kind: str
    source: str

    @property
    def support(self) -> np.ndarray:
        """Sorted indices of the vertices (or joints) with a non-zero weight in some row."""
        return np.flatnonzero(np.any(self.weights != 0, axis=0))


def load_regressor(path: Path, num_vertices: int) -> Regressor:
    """Load a 17 x V Human3.6M vertex regressor (``.npy``).

    Raises:
        FileNotFoundError naming the file; ValueError naming the file when it is not (17, num_vertices) or
        holds non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"joint regressor {path} does not exist")
    weights = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    if weights.shape != (17, num_vertices):
        raise ValueError(
            f"joint regressor {path}: shape {weights.shape}, expected (17, {num_vertices}) "
            f"for a body model with {num_vertices} vertices"
        )
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"joint regressor {path}: non-finite weights")
    return Regressor(weights=weights, kind="vertices", source=str(path))


def find_regressor(body_models: Path, model_type: str, num_vertices: int) -> Path | None:
    """The first ``J_regressor_h36m*.npy`` (sorted) in ``body_models`` or ``body_models/<model_type>`` with
    ``num_vertices`` columns, or None."""
    body_models = Path(body_models)
    for folder in (body_models, body_models / model_type):
        for path in sorted(folder.glob("J_regressor_h36m*.npy")):
            shape = np.load(path, mmap_mode="r").shape
            if len(shape) == 2 and shape[1] == num_vertices:
                return path
    return None


def model_candidates(body_models: Path, model_type: str, gender: str) -> list[Path]:
    """Files that may hold the ``model_type`` model of ``gender``, in the order they are tried:
    ``smplx``'s layout (npz then pkl), then AMASS's."""
    folder = Path(body_models) / model_type
    stem = f"{model_type.upper()}_{gender.upper()}"
    return [folder / f"{stem}.npz", folder / f"{stem}.pkl", folder / gender / "model.npz"]


def find_model_file(body_models: Path, model_type: str, gender: str) -> Path:
    """First existing file of :func:`model_candidates`.

    Raises:
        ValueError for an unknown model type or gender; FileNotFoundError listing every file looked for.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown body model type {model_type!r}, expected one of {MODEL_TYPES}")
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}, expected one of {GENDERS}")
    candidates = model_candidates(body_models, model_type, gender)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no {model_type} {gender} body model in {body_models}: looked for " + ", ".join(str(p) for p in candidates)
    )


def _read_model_file(path: Path) -> dict:
    if path.suffix == ".pkl":
        data = load_pickle(path, encoding="latin1")
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
        return dict(data)
    return load_npz(path)


def _smplh_module(path: Path, data: dict, num_betas: int) -> smplx.SMPLH:
    """smplx.SMPLH from an already read file, keeping up to every shape coefficient of the file."""
    for side in "lr":
        data.setdefault(f"hands_components{side}", np.eye(45))
        data.setdefault(f"hands_mean{side}", np.zeros(45))
    available = np.asarray(data["shapedirs"]).shape[-1]
    cls = type("SMPLH", (smplx.SMPLH,), {"SHAPE_SPACE_DIM": available})
    return cls(
        model_path=str(path),
        data_struct=smplx.utils.Struct(**data),
        num_betas=num_betas,
        use_pca=False,
        flat_hand_mean=True,
        dtype=DTYPE,
    )


class BodyModel:
    """A gendered SMPL-H or SMPL-X model with its Human3.6M-17 regressor.

    Pose layout (``full_pose``, (N, J, 3) axis-angle radians, ``smplx`` joint order): SMPL-H J = 52 (root,
    21 body, 15 left hand, 15 right hand: AMASS's 156-value ``poses``); SMPL-X J = 55 (root, 21 body, jaw,
    left eye, right eye, 15 left hand, 15 right hand: AMASS's 165-value ``poses``).

    Attributes:
        module: the ``smplx`` model (float64).
        model_type, gender, path: what was loaded from where.
        regressor: :class:`Regressor`.
        stand_in: True when the file is posemill's generated stand-in (``stand_in_body_model`` key).
    """

    def __init__(
        self, module: smplx.SMPLH, model_type: str, gender: str, path: Path, regressor: Regressor, stand_in: bool
    ):
        self.module, self.model_type, self.gender, self.path = module, model_type, gender, path
        self.regressor, self.stand_in = regressor, stand_in
        self.joint_set = JOINT_SET[model_type]
        self._weights = torch.tensor(regressor.weights, dtype=DTYPE)
        self._row_sum = self._weights.sum(dim=1)
        sel = torch.tensor(regressor.support if regressor.kind == "vertices" else [], dtype=torch.long)
        m = module
        self._sel = sel
        self._sel_weights = self._weights[:, sel] if regressor.kind == "vertices" else None
        self._v_template = m.v_template[sel]
        self._shapedirs = m.shapedirs[sel]
        posedirs = m.posedirs.view(m.posedirs.shape[0], -1, 3)
        self._posedirs = posedirs[:, sel].reshape(posedirs.shape[0], -1)
        self._lbs_weights = m.lbs_weights[sel]
        self._j_template = vertices2joints(m.J_regressor, m.v_template[None])[0]
        self._j_shapedirs = torch.einsum("jv,vcb->jcb", m.J_regressor, m.shapedirs)

    @property
    def num_betas(self) -> int:
        return int(self.module.num_betas)

    @property
    def num_vertices(self) -> int:
        return int(self.module.v_template.shape[0])

    def fit_betas(self, betas: np.ndarray) -> torch.Tensor:
        """(B,) betas truncated or zero-padded to :attr:`num_betas`, as a (1, num_betas) float64 tensor."""
        out = torch.zeros(1, self.num_betas, dtype=DTYPE)
        n = min(len(betas), self.num_betas)
        out[0, :n] = torch.as_tensor(np.asarray(betas[:n], dtype=np.float64))
        return out

    def _check(self, full_pose: np.ndarray, trans: np.ndarray) -> None:
        joints = len(self.joint_set)
        if full_pose.ndim != 3 or full_pose.shape[1:] != (joints, 3):
            raise ValueError(f"{self.model_type} pose must be (N, {joints}, 3), got {full_pose.shape}")
        if trans.shape != (len(full_pose), 3):
            raise ValueError(f"translation must be ({len(full_pose)}, 3), got {trans.shape}")

    def joints_fast(self, full_pose: np.ndarray, betas: np.ndarray, trans: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Human3.6M-17 joints by skinning only the regressor's vertices.

        Same formulas as ``smplx.lbs.lbs`` (shape blend shapes, joints from the shaped mesh, pose blend
        shapes, rigid chain, linear blend skinning), restricted to :attr:`Regressor.support`; for the joint
        mapping only the rigid chain runs.

        Args:
            full_pose: (N, J, 3) axis-angle, radians (class docstring). betas: (B,), any B.
            trans: (N, 3) root translation, metres.
            chunk: frames per batch.

        Returns:
            (N, 17, 3) float64, metres, the body model's world frame.
        """
        full_pose, trans = np.asarray(full_pose, np.float64), np.asarray(trans, np.float64)
        self._check(full_pose, trans)
        b = self.fit_betas(betas)
        joints_rest = (self._j_template + blend_shapes(b, self._j_shapedirs)[0])[None]
        v_shaped = self._v_template + blend_shapes(b, self._shapedirs)[0]
        out = []
        with torch.no_grad():
            for start in range(0, len(full_pose), chunk):
                pose = torch.as_tensor(full_pose[start : start + chunk]).reshape(-1, self.module.pose_mean.numel())
                pose = pose + self.module.pose_mean
                n = pose.shape[0]
                rot = batch_rodrigues(pose.reshape(-1, 3)).view(n, -1, 3, 3)
                posed_joints, transforms = batch_rigid_transform(
                    rot, joints_rest.expand(n, -1, -1), self.module.parents, dtype=DTYPE
                )
                if self._sel_weights is None:
                    joints = self._weights @ posed_joints
                else:
                    feature = (rot[:, 1:] - torch.eye(3, dtype=DTYPE)).reshape(n, -1)
                    v_posed = v_shaped + (feature @ self._posedirs).view(n, -1, 3)
                    skin = (self._lbs_weights @ transforms.view(n, -1, 16)).view(n, -1, 4, 4)
                    verts = (skin[..., :3, :3] @ v_posed[..., None])[..., 0] + skin[..., :3, 3]
                    joints = self._sel_weights @ verts
                tr = torch.as_tensor(trans[start : start + chunk])
                out.append((joints + self._row_sum[None, :, None] * tr[:, None]).numpy())
        return np.concatenate(out) if out else np.zeros((0, 17, 3))

    def joints_full(self, full_pose: np.ndarray, betas: np.ndarray, trans: np.ndarray, chunk: int = 128) -> np.ndarray:
        """Human3.6M-17 joints by the full ``smplx`` forward pass, then the regressor; the reference for
        :meth:`joints_fast` (same arguments and result)."""
        full_pose, trans = np.asarray(full_pose, np.float64), np.asarray(trans, np.float64)
        self._check(full_pose, trans)
        b = self.fit_betas(betas)
        out = []
        with torch.no_grad():
            for start in range(0, len(full_pose), chunk):
                pose = torch.as_tensor(full_pose[start : start + chunk])
                n = len(pose)
                kwargs = {
                    "betas": b.expand(n, -1),
                    "global_orient": pose[:, 0],
                    "transl": torch.as_tensor(trans[start : start + chunk]),
                    "body_pose": pose[:, 1:22].reshape(n, -1),
                }
                hands = pose[:, 22:]
                if self.model_type == "smplx":
                    kwargs.update(
                        jaw_pose=pose[:, 22],
                        leye_pose=pose[:, 23],
                        reye_pose=pose[:, 24],
                        expression=torch.zeros(n, self.module.num_expression_coeffs, dtype=DTYPE),
                    )
                    hands = pose[:, 25:]
                kwargs.update(left_hand_pose=hands[:, :15].reshape(n, -1), right_hand_pose=hands[:, 15:].reshape(n, -1))
                output = self.module(**kwargs)
                if self.regressor.kind == "vertices":
                    joints = self._weights @ output.vertices
                else:
                    joints = self._weights @ output.joints[:, : len(self.joint_set)]
                out.append(joints.numpy())
        return np.concatenate(out) if out else np.zeros((0, 17, 3))


@functools.lru_cache(maxsize=8)
def load_body_model(
    body_models: Path, model_type: str, gender: str, regressor: Path | None = None, num_betas: int = 16
) -> BodyModel:
    """Load the ``model_type`` model of ``gender`` from ``body_models`` with its Human3.6M regressor.

    Args:
        body_models: folder in ``smplx``'s or AMASS's layout (module docstring).
        model_type: ``"smplh"`` or ``"smplx"``. gender: ``"male"``, ``"female"`` or ``"neutral"``.
        regressor: 17 x V ``.npy``; None: a matching ``J_regressor_h36m*.npy`` in ``body_models``, else
            (SMPL-X only) :func:`smplx_joint_mapping`.
        num_betas: shape coefficients wanted; the model keeps at most as many as its file has.

    Returns:
        :class:`BodyModel` (cached per process).

    Raises:
        FileNotFoundError naming the model file(s) or regressor looked for; ValueError naming the file
        when ``smplx`` cannot build a model from it or the regressor does not fit the mesh.
    """
    path = find_model_file(body_models, model_type, gender)
    try:
        data = _read_model_file(path)
        stand_in = bool(np.asarray(data.pop("stand_in_body_model", False)))
        if model_type == "smplh":
            module = _smplh_module(path, data, num_betas)
        else:
            module = smplx.SMPLX(
                str(path), ext=path.suffix[1:], num_betas=num_betas, use_pca=False, flat_hand_mean=True, dtype=DTYPE
            )
    except (KeyError, AttributeError, ValueError, ImportError, pickle.UnpicklingError, OSError) as exc:
        raise ValueError(f"body model {path}: smplx cannot load it ({type(exc).__name__}: {exc})") from exc
    num_vertices = int(module.v_template.shape[0])
    extra = module.vertex_joint_selector.extra_joints_idxs
    if len(extra) and int(extra.max()) >= num_vertices:
        # smplx's extra keypoints index the official meshes; posemill never reads them.
        module.vertex_joint_selector.extra_joints_idxs = extra[:0]
    if regressor is None:
        regressor = find_regressor(body_models, model_type, num_vertices)
    if regressor is not None:
        reg = load_regressor(regressor, num_vertices)
    elif model_type == "smplx":
        reg = Regressor(weights=smplx_joint_mapping(), kind="joints", source="smplx_joint_mapping")
    else:
        raise FileNotFoundError(
            f"no Human3.6M joint regressor for the {num_vertices}-vertex {model_type} mesh of {path}: pass "
            f"--regressor FILE (17 x {num_vertices} .npy) or put a J_regressor_h36m*.npy in {body_models}"
        )
    return BodyModel(module, model_type, gender, path, reg, stand_in)
