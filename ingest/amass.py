"""AMASS reader: body-model motions to Human3.6M-17 joints seen by virtual cameras, in the motion store.

Source layout: ``SRC/<subset>/<subject>/<motion>.npz``, one motion per file, from either release:

* "SMPL+H G": ``poses`` (N, 156) axis-angle radians (root 3, body 63, left hand 45, right hand 45),
  ``trans`` (N, 3) metres, ``betas`` (16,), ``gender``, ``mocap_framerate``, optional ``dmpls``;
* "SMPL-X N": ``poses`` (N, 165) (root 3, body 63, jaw 3, eyes 6, hands 90, ``smplx``'s full-pose order)
  or the split keys ``root_orient`` (N, 3), ``pose_body`` (N, 63), ``pose_jaw`` (N, 3), ``pose_eye``
  (N, 6), ``pose_hand`` (N, 90) (used when present), ``mocap_frame_rate``, ``surface_model_type``,
  ``num_betas``.

Variations handled (``../shared/data/README.md``): ``gender`` as str, bytes or a 0-d array of either;
non-integer frame rates (120.0000458); extra keys (``marker_data``, ...); no ``dmpls`` (DMPL soft-tissue
coefficients are never used: ``smplx`` has no DMPL space); shape-only files without poses (``shape.npz``),
for which :meth:`AmassReader.read` returns []. Anything else malformed raises ValueError naming the file,
the key and the problem.

Per motion: rotations are resampled to 50 fps by slerp and the translation linearly, *before* the
forward pass (:func:`resample`); the gendered body model (:mod:`ingest.body_model`) gives Human3.6M-17
joints in AMASS's world (z up, metres) by the fast path; K virtual cameras (:func:`ingest.camera.
virtual_cameras`, seeded by the motion id) each give one sequence: 3D in that camera's coordinates and
its projection with confidence 1. Split 'train'; subject ``<subset>/<subject>``; id
``<subset>_<subject>_<motion>_v<k>``.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ingest.body_model import GENDERS, load_body_model
from ingest.camera import virtual_cameras
from ingest.conventions import STORE_FPS, resample_times
from ingest.store import Sequence, safe_name
from ingest.untrusted import foreign_errors

POSE_DIMS = {156: "smplh", 165: "smplx"}
# smplx full-pose order of AMASS's split keys, with their widths.
SPLIT_KEYS = {
    "smplh": (("root_orient", 3), ("pose_body", 63), ("pose_hand", 90)),
    "smplx": (("root_orient", 3), ("pose_body", 63), ("pose_jaw", 3), ("pose_eye", 6), ("pose_hand", 90)),
}
RATE_KEYS = ("mocap_framerate", "mocap_frame_rate")


@dataclass
class Motion:
    """One AMASS motion as read from its file.

    Attributes:
        model_type: ``"smplh"`` or ``"smplx"``. gender: ``"male"``, ``"female"`` or ``"neutral"``.
        fps: capture frame rate (Hz). betas: (B,) shape coefficients.
        full_pose: (N, 52 or 55, 3) axis-angle radians, ``smplx`` joint order. trans: (N, 3) metres.
    """

    model_type: str
    gender: str
    fps: float
    betas: np.ndarray
    full_pose: np.ndarray
    trans: np.ndarray


def _text(value, path: Path, key: str) -> str:
    """str, bytes or a 1-element array of either, as lower-case text."""
    value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"{path}: key {key!r} has shape {value.shape}, expected a single string")
    value = value.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip().lower()


def _array(data, path: Path, key: str, ndim: int) -> np.ndarray:
    value = np.asarray(data[key])
    if value.ndim != ndim or not np.issubdtype(value.dtype, np.number):
        raise ValueError(
            f"{path}: key {key!r} has shape {value.shape} and dtype {value.dtype}, expected a {ndim}-d numeric array"
        )
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{path}: key {key!r} holds non-finite values")
    return value


def _poses(data, path: Path) -> tuple[str, np.ndarray]:
    """Model type and (N, D) pose array from ``poses`` or the split keys."""
    declared = _text(data["surface_model_type"], path, "surface_model_type") if "surface_model_type" in data else None
    if "root_orient" in data:
        model_type = "smplx" if "pose_jaw" in data else "smplh"
        parts = []
        for key, width in SPLIT_KEYS[model_type]:
            if key not in data:
                raise ValueError(f"{path}: has 'root_orient' but no {key!r} (split {model_type} pose keys)")
            part = _array(data, path, key, 2)
            if part.shape[1] != width:
                raise ValueError(f"{path}: key {key!r} has shape {part.shape}, expected (N, {width})")
            parts.append(part)
        if len({len(p) for p in parts}) != 1:
            raise ValueError(f"{path}: split pose keys have different frame counts {[len(p) for p in parts]}")
        poses = np.concatenate(parts, axis=1)
    else:
        poses = _array(data, path, "poses", 2)
        if poses.shape[1] not in POSE_DIMS:
            raise ValueError(
                f"{path}: key 'poses' has shape {poses.shape}, expected (N, 156) for SMPL+H or (N, 165) for SMPL-X"
            )
        model_type = POSE_DIMS[poses.shape[1]]
    if declared is not None and declared != model_type:
        raise ValueError(f"{path}: surface_model_type is {declared!r} but the poses are {model_type}")
    return model_type, poses


def load_motion(path: Path) -> Motion | None:
    """Read and validate one AMASS npz; None for a shape-only file (no ``poses`` nor split pose keys).

    Raises:
        ValueError naming the file and key for a missing key, wrong shape, non-finite value, unknown
        gender, bad frame rate or an unreadable file.
    """
    path = Path(path)
    wanted = {
        "poses",
        "trans",
        "betas",
        "gender",
        "num_betas",
        "surface_model_type",
        *RATE_KEYS,
        *(key for keys in SPLIT_KEYS.values() for key, _ in keys),
    }
    with foreign_errors(path, "not a readable npz file", ValueError), np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files if k in wanted}
    if "poses" not in data and "root_orient" not in data:
        return None
    for key in ("trans", "betas", "gender"):
        if key not in data:
            raise ValueError(f"{path}: no key {key!r}")
    model_type, poses = _poses(data, path)
    trans = _array(data, path, "trans", 2)
    if trans.shape != (len(poses), 3):
        raise ValueError(f"{path}: key 'trans' has shape {trans.shape}, expected ({len(poses)}, 3)")
    if len(poses) == 0:
        raise ValueError(f"{path}: the motion has no frames")
    betas = _array(data, path, "betas", 1)
    if "num_betas" in data:
        betas = betas[: int(np.asarray(data["num_betas"]).reshape(()))]
    gender = _text(data["gender"], path, "gender")
    if gender not in GENDERS:
        raise ValueError(f"{path}: key 'gender' is {gender!r}, expected one of {GENDERS}")
    rate_key = next((k for k in RATE_KEYS if k in data), None)
    if rate_key is None:
        raise ValueError(f"{path}: no frame rate (neither of the keys {RATE_KEYS})")
    fps = np.asarray(data[rate_key], dtype=np.float64)
    if fps.size != 1 or not np.isfinite(fps).all() or float(fps.reshape(())) <= 0:
        raise ValueError(f"{path}: key {rate_key!r} is {data[rate_key]!r}, expected a positive frame rate")
    return Motion(
        model_type=model_type,
        gender=gender,
        fps=float(fps.reshape(())),
        betas=betas,
        full_pose=poses.reshape(len(poses), -1, 3),
        trans=trans,
    )


def resample(
    full_pose: np.ndarray, trans: np.ndarray, fps: float, target: float = STORE_FPS
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a motion to ``target`` fps: slerp of every joint rotation, linear translation.

    Output frame k is at time k / target; M = floor((N - 1) target / fps) + 1 frames, so the duration is
    kept within one output frame (:func:`ingest.conventions.resample_times`). Where an output time falls on a
    source frame (within 1e-9 frame) that frame is copied unchanged: a 100 fps motion gives exactly its even
    frames.

    Args:
        full_pose: (N, J, 3) axis-angle, radians. trans: (N, 3) metres. fps: source rate (Hz).

    Returns:
        (M, J, 3) axis-angle and (M, 3) translation.
    """
    i0, i1, alpha = resample_times(len(full_pose), fps, target)
    out_trans = (1 - alpha)[:, None] * trans[i0] + alpha[:, None] * trans[i1]
    out_pose = full_pose[i0].copy()
    between = np.flatnonzero(alpha > 0)
    if len(between):
        joints = full_pose.shape[1]
        r0 = Rotation.from_rotvec(full_pose[i0[between]].reshape(-1, 3))
        r1 = Rotation.from_rotvec(full_pose[i1[between]].reshape(-1, 3))
        step = (r0.inv() * r1).as_rotvec() * np.repeat(alpha[between], joints)[:, None]
        out_pose[between] = (r0 * Rotation.from_rotvec(step)).as_rotvec().reshape(len(between), joints, 3)
    return out_pose, out_trans


def motion_names(path: Path) -> tuple[str, str, str]:
    """(subject, action, motion id) from ``.../<subset>/<subject>/<motion>.npz``: subject
    ``"<subset>/<subject>"``, action the file stem, id ``safe_name("<subset>_<subject>_<stem>")``."""
    path = Path(path)
    folders = [p for p in path.parts[-3:-1]]
    return "/".join(folders), path.stem, safe_name("_".join([*folders, path.stem]))


def camera_seed(motion_id: str) -> int:
    """Seed of a motion's virtual cameras: the first 8 bytes of sha256(id) (stable across runs and
    machines, unlike Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(motion_id.encode()).digest()[:8], "little")


@dataclass
class AmassReader:
    """Reader of AMASS (module docstring). Options:

    body_models: folder with SMPL-H / SMPL-X models (``ingest.body_model`` layouts).
    regressor: 17 x V Human3.6M regressor ``.npy``; None: one found in ``body_models``.
    views: virtual cameras per motion.
    gender_override: use this body model for every motion instead of the file's ``gender``.
    """

    body_models: Path
    regressor: Path | None = None
    views: int = 4
    gender_override: str | None = None
    dataset: str = "amass"

    def sources(self, src: Path) -> list[Path]:
        files = sorted(Path(src).rglob("*.npz"))
        if not files:
            raise FileNotFoundError(f"{src}: no AMASS motion files (*.npz, searched recursively)")
        return files

    def part_name(self, src: Path, path: Path) -> str:
        return safe_name(str(Path(path).relative_to(src).with_suffix("")))

    def read(self, path: Path) -> list[Sequence]:
        path = Path(path)
        motion = load_motion(path)
        if motion is None:
            return []
        gender = self.gender_override or motion.gender
        body = load_body_model(
            Path(self.body_models),
            motion.model_type,
            gender,
            Path(self.regressor) if self.regressor else None,
            num_betas=len(motion.betas),
        )
        pose, trans = resample(motion.full_pose, motion.trans, motion.fps)
        world = body.joints_fast(pose, motion.betas, trans)
        subject, action, motion_id = motion_names(path)
        cameras = virtual_cameras(world, np.random.default_rng(camera_seed(motion_id)), self.views)
        meta = {
            "subject": subject,
            "action": action,
            "split": "train",
            "fps": STORE_FPS,
            "source": str(path),
            "dataset": self.dataset,
            "model_type": motion.model_type,
            "gender": gender,
            "source_fps": motion.fps,
            "source_frames": len(motion.full_pose),
            "body_model": str(body.path),
            "regressor": body.regressor.source,
            "stand_in_body_model": body.stand_in,
        }
        sequences = []
        for cam in cameras:
            pose3d = cam.world_to_camera(world)
            pose2d = np.ones((*pose3d.shape[:2], 3), np.float32)
            pose2d[..., :2] = cam.project(pose3d)
            sequences.append(
                Sequence(
                    meta={**meta, "id": f"{motion_id}_{cam.id}", **cam.to_meta()},
                    pose3d=pose3d.astype(np.float32),
                    pose2d=pose2d,
                )
            )
        return sequences


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--body-models",
        type=Path,
        required=True,
        help="folder with smplh/ and smplx/ body models (smplx's or AMASS's layout)",
    )
    parser.add_argument(
        "--regressor",
        type=Path,
        help="17 x V Human3.6M joint regressor .npy (default: a "
        "J_regressor_h36m*.npy in --body-models matching the mesh; SMPL-X: joint mapping)",
    )
    parser.add_argument("--views", type=int, default=4, help="virtual cameras per motion (default 4)")
    parser.add_argument(
        "--gender-override", choices=GENDERS, help="use this gender's body model for every motion instead of the file's"
    )


def reader_from_args(args: argparse.Namespace) -> AmassReader:
    if args.views < 1:
        raise ValueError(f"--views must be at least 1, got {args.views}")
    if not Path(args.body_models).is_dir():
        raise FileNotFoundError(f"--body-models {args.body_models}: no such folder (SMPL-H / SMPL-X model files)")
    if args.regressor is not None and not Path(args.regressor).is_file():
        raise FileNotFoundError(f"--regressor {args.regressor}: no such file (a 17 x V .npy regressor)")
    return AmassReader(
        body_models=args.body_models, regressor=args.regressor, views=args.views, gender_override=args.gender_override
    )
