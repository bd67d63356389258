"""Human3.6M reader: the Martinez h5 layout and the VideoPose3D npz layout, to the motion store.

Layouts (facts checked on the real files, ``../shared/data/README.md``):

* Martinez (3d-pose-baseline): ``S<n>/MyPoses/3D_positions/<Action>[ <k>].h5`` holding ``3D_positions``
  (96, N) float64, i.e. (N, 32, 3) millimetres in world coordinates at 50 fps, plus ``cameras.h5`` at the
  root (``subject<n>/camera<m>/{R, T, f, c, k, p, Name}``, ``R`` stored transposed, ``T`` the camera centre
  in mm). Without ``cameras.h5`` the published calibration (``ingest.camera.h36m_published_cameras``) is used.
* VideoPose3D: ``data_3d_h36m.npz`` whose ``positions_3d`` is a pickled dict subject -> action ->
  (N, 32, 3) metres in world coordinates; optional detections ``data_2d_h36m_<name>.npz`` (CPN and the like)
  whose ``positions_2d`` is subject -> action -> 4 arrays (N, 17, 2 or 3) pixels in Human3.6M-17 order, one
  per camera in the dataset's camera order (``metadata['layout_name'] == 'h36m'``).
* Stacked Hourglass detections of the Martinez release (``detections="sh"``, Martinez layout only):
  ``S<n>/StackedHourglass/<Action>[_<k>].<camera>.h5`` beside ``MyPoses``, one dataset ``poses`` (N, 16, 2)
  float64 pixels in MPII order, no confidence, one file per take and camera; the file name writes the 3D
  file's space as ``_`` (``Walking_1`` for ``Walking 1``). Each file must have exactly the take's frame count
  (checked on the real files: S1 ``Walking 1`` 3,476 and 3,476): a missing file or another count fails the
  take, naming the file, and the other takes convert. Joints map to Human3.6M-17 by
  :func:`ingest.skeleton.mpii16_to_h36m17` (3d-pose-baseline's permutation); confidence 1, 0 for the
  derived neck/nose.

Each take becomes 4 sequences, one per camera: 3D in camera coordinates (metres), 2D the ground-truth
projection with the dataset's distortion model and confidence 1, or the given detections (their score, 1
when they carry none). Split by subject: S1, S5, S6, S7, S8 train; S9, S11 test (the standard protocol).
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.camera import Camera, h36m_published_cameras
from ingest.conventions import STORE_FPS
from ingest.job import DroppedByRule
from ingest.skeleton import MPII16, NECK_NOSE, mpii16_to_h36m17, to_h36m17
from ingest.store import Sequence, safe_name
from ingest.untrusted import foreign_errors, load_npz, open_h5

STACKED_HOURGLASS = "sh"  # ``detections`` value: the Stacked Hourglass files of the Martinez release
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
# (subject, action file stem) -> reason. 3d-pose-baseline's data loader and VideoPose3D's 2D preparation
# scripts skip S11 "Directions": the video of camera 54138969 is damaged in the original release.
KNOWN_CORRUPT = {
    ("S11", "Directions"): (
        "S11 'Directions' is damaged in the original Human3.6M release (video of camera 54138969); "
        "3d-pose-baseline and VideoPose3D drop this take"
    ),
}

# The 15 Human3.6M actions in the papers' column order, with the papers' abbreviations.
# fmt: off
H36M_ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
                "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")
H36M_ABBREV = ("Dir.", "Disc.", "Eat", "Greet", "Phone", "Photo", "Pose", "Purch.", "Sit", "SitD.", "Smoke",
               "Wait", "WalkD.", "Walk", "WalkT.")
# fmt: on
# Other spellings of the same actions in Human3.6M releases (the original video names).
ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog", "WalkingTogether": "WalkTogether"}


def canonical_action(meta: dict) -> str:
    """The sequence's action as one of :data:`H36M_ACTIONS`; raises ValueError naming the sequence."""
    action = str(meta["action"]).split(" ")[0]
    action = ACTION_ALIASES.get(action, action)
    if action not in H36M_ACTIONS:
        raise ValueError(f"sequence {meta['id']}: action {meta['action']!r} is not a Human3.6M action {H36M_ACTIONS}")
    return action


def split_action(stem: str) -> tuple[str, int]:
    """``"Directions 1"`` -> ("Directions", 1); ``"Directions"`` -> ("Directions", 0)."""
    action, _, take = stem.partition(" ")
    return action, int(take) if take.isdigit() else 0


def subject_split(subject: str) -> str:
    """'train' or 'test' for a Human3.6M subject; ValueError for subjects outside the protocol."""
    if subject in TRAIN_SUBJECTS:
        return "train"
    if subject in TEST_SUBJECTS:
        return "test"
    raise ValueError(
        f"subject {subject!r} is in neither the train {TRAIN_SUBJECTS} nor the test "
        f"{TEST_SUBJECTS} subjects of the standard protocol"
    )


# Image size (width, height) per camera id, a dataset fact (``../shared/data/README.md``).
IMAGE_SIZE = {"54138969": (1000, 1002), "55011271": (1000, 1000), "58860488": (1000, 1000), "60457274": (1000, 1002)}


def load_cameras_h5(path: Path) -> dict[str, list[Camera]]:
    """Read the dataset's ``cameras.h5``: subject (``"S1"``) -> its 4 cameras (metres, pixels).

    Raises:
        KeyError naming the file and group when a field is missing. OSError naming the file when it is not a
        readable HDF5 file (missing, foreign or damaged: :func:`ingest.untrusted.open_h5`).
    """
    cameras: dict[str, list[Camera]] = {}
    with open_h5(path) as fh:
        for group in (g for g in fh if g.startswith("subject")):
            cams = []
            for m in range(1, 5):
                key = f"{group}/camera{m}"
                try:
                    g = fh[key]
                    cam_id = "".join(chr(int(v)) for v in g["Name"][:].ravel())
                    width, height = IMAGE_SIZE[cam_id]
                    cams.append(
                        Camera(
                            R=g["R"][:].T,
                            T=g["T"][:].reshape(3) / 1000.0,
                            f=g["f"][:].reshape(2),
                            c=g["c"][:].reshape(2),
                            k=g["k"][:].reshape(3),
                            p=g["p"][:].reshape(2),
                            id=cam_id,
                            width=width,
                            height=height,
                        )
                    )
                except KeyError as exc:
                    raise KeyError(f"{path}: {key}: missing or unknown {exc}") from None
            cameras[f"S{group.removeprefix('subject')}"] = cams
    return cameras


def camera_sequences(
    world: np.ndarray, cameras: list[Camera], meta: dict, detections: list[np.ndarray] | None = None
) -> list[Sequence]:
    """One take in world coordinates to one :class:`Sequence` per camera.

    Args:
        world: (N, 17, 3) world joints in metres (Human3.6M-17 order).
        cameras: the subject's 4 cameras.
        meta: take-level metadata (subject, action, take, split, source); completed per camera.
        detections: optional 4 arrays (N, 17, 2 or 3) pixels, one per camera.
    """
    sequences = []
    for i, cam in enumerate(cameras):
        pose3d = cam.world_to_camera(world).astype(np.float32)
        pose2d = np.ones((*pose3d.shape[:2], 3), np.float32)
        if detections is None:
            pose2d[..., :2] = cam.project(pose3d)
            source2d = "gt"
        else:
            det = detections[i]
            pose2d[..., : det.shape[-1]] = det[..., :3]
            source2d = meta["pose2d_source"]
        seq_id = safe_name(f"{meta['subject']}_{meta['action']}_{meta['take']}_{cam.id}")
        sequences.append(
            Sequence(
                meta={**meta, "id": seq_id, "fps": STORE_FPS, "pose2d_source": source2d, **cam.to_meta()},
                pose3d=pose3d,
                pose2d=pose2d,
            )
        )
    return sequences


@dataclass
class H36MReader:
    """Reader of Human3.6M (see module docstring). Options:

    subjects: subjects to convert (``("S1", "S11")``); None for all present.
    cameras_file: calibration h5; default ``SRC/cameras.h5`` when present, else the published calibration.
    detections: 2D to store instead of the GT projection: a VideoPose3D ``data_2d_h36m_<name>.npz``, or
        ``"sh"`` for the Stacked Hourglass files beside the 3D (module docstring).
    """

    subjects: tuple[str, ...] | None = None
    cameras_file: Path | None = None
    detections: Path | str | None = None
    dataset: str = "h36m"

    def sources(self, src: Path) -> list[Path]:
        src = Path(src)
        if (src / "data_3d_h36m.npz").is_file():
            return [src / "data_3d_h36m.npz"]
        files = sorted(src.glob("S*/MyPoses/3D_positions/*.h5"))
        if self.subjects:
            files = [f for f in files if f.parts[-4] in self.subjects]
        if not files:
            which = f" for {', '.join(self.subjects)}" if self.subjects else ""
            raise FileNotFoundError(
                f"{src}: no Human3.6M files (neither data_3d_h36m.npz nor S*/MyPoses/3D_positions/*.h5{which})"
            )
        if self.cameras_file is None and not (src / "cameras.h5").is_file():
            warnings.warn(
                f"{src}: no cameras.h5; using the published calibration (--cameras FILE to give one)", stacklevel=2
            )
        return files

    def part_name(self, src: Path, path: Path) -> str:
        if path.suffix == ".npz":
            return safe_name(path.stem)
        return safe_name(f"{path.parts[-4]}_{path.stem}")

    def part_attrs(self, path: Path) -> dict:
        """The 2D source of the part (``gt``, ``stacked_hourglass`` or the npz's name): a re-run with
        another source refuses the existing parts instead of keeping them silently (:mod:`ingest.job`)."""
        if self.detections is None:
            return {"pose2d_source": "gt"}
        if self.detections == STACKED_HOURGLASS:
            return {"pose2d_source": "stacked_hourglass"}
        return {"pose2d_source": Path(self.detections).stem.removeprefix("data_2d_h36m_")}

    def _cameras(self, root: Path) -> tuple[dict[str, list[Camera]], str]:
        """Calibration and its description: ``cameras_file``, else ``root/cameras.h5``, else published."""
        path = self.cameras_file or (root / "cameras.h5" if (root / "cameras.h5").is_file() else None)
        if path is None:
            return h36m_published_cameras(), "published calibration"
        return load_cameras_h5(path), str(path)

    def _detections(self) -> tuple[dict, str] | None:
        if self.detections is None or self.detections == STACKED_HOURGLASS:
            return None
        npz = load_npz(self.detections)
        for key in ("positions_2d", "metadata"):
            if key not in npz:
                raise KeyError(f"{self.detections}: no key {key!r} (expected VideoPose3D's 2D layout)")
        meta = npz["metadata"].item()
        if meta.get("layout_name") != "h36m" or meta.get("num_joints") != 17:
            raise ValueError(
                f"{self.detections}: keypoint layout {meta.get('layout_name')!r} with "
                f"{meta.get('num_joints')} joints; only the 17-joint 'h36m' layout is supported"
            )
        name = Path(self.detections).stem.removeprefix("data_2d_h36m_")
        return npz["positions_2d"].item(), name

    def read(self, path: Path) -> list[Sequence]:
        path = Path(path)
        if path.suffix == ".npz":
            takes, root = self._read_videopose3d(path), path.parent
        else:
            takes, root = [self._read_martinez(path)], path.parents[3]
        cameras, calibration = self._cameras(root)
        if self.detections == STACKED_HOURGLASS and path.suffix == ".npz":
            raise ValueError(
                f"{path}: Stacked Hourglass detections (--detections sh) are read beside the Martinez "
                "layout (S*/StackedHourglass/); for the VideoPose3D layout give a "
                "data_2d_h36m_<name>.npz"
            )
        detections = self._detections()
        sequences = []
        for subject, stem, world in takes:
            if subject not in cameras:
                raise KeyError(f"{path}: no calibration for subject {subject} in {calibration}")
            action, take = split_action(stem)
            meta = {
                "subject": subject,
                "action": action,
                "take": take,
                "split": subject_split(subject),
                "source": str(path),
                "dataset": self.dataset,
                "calibration": calibration,
            }
            dets = None
            if detections is not None:
                table, meta["pose2d_source"] = detections
                dets = _take_detections(table, subject, stem, len(world), self.detections)
            elif self.detections == STACKED_HOURGLASS:
                meta["pose2d_source"] = "stacked_hourglass"
                dets = stacked_hourglass_detections(
                    root / subject / "StackedHourglass", stem, cameras[subject], len(world)
                )
            sequences += camera_sequences(world, cameras[subject], meta, dets)
        return sequences

    def _read_martinez(self, path: Path) -> tuple[str, str, np.ndarray]:
        subject = path.parts[-4]
        if (subject, path.stem) in KNOWN_CORRUPT:
            raise DroppedByRule(KNOWN_CORRUPT[subject, path.stem])
        with open_h5(path) as fh:
            if "3D_positions" not in fh:
                raise KeyError(f"{path}: no dataset '3D_positions' (has {sorted(fh)})")
            raw = fh["3D_positions"][:]
        if raw.ndim != 2 or raw.shape[0] != 96:
            raise ValueError(f"{path}: '3D_positions' has shape {raw.shape}, expected (96, N)")
        if raw.dtype.kind not in "iuf":
            raise ValueError(f"{path}: '3D_positions' has dtype {raw.dtype}, expected numbers")
        world = raw.T.reshape(-1, 32, 3) / 1000.0
        _check_finite(world, path, "3D_positions")
        return subject, path.stem, to_h36m17(world, "h36m32")

    def _read_videopose3d(self, path: Path) -> list[tuple[str, str, np.ndarray]]:
        npz = load_npz(path)
        if "positions_3d" not in npz:
            raise KeyError(f"{path}: no key 'positions_3d' (has {list(npz)})")
        with foreign_errors(path, "'positions_3d' is not VideoPose3D's {subject: {take: array}} dict", ValueError):
            data = {subject: dict(takes) for subject, takes in npz["positions_3d"].item().items()}
        takes = []
        for subject in sorted(data):
            if self.subjects and subject not in self.subjects:
                continue
            for stem in sorted(data[subject]):
                if (subject, stem) in KNOWN_CORRUPT:
                    continue
                world = np.asarray(data[subject][stem], dtype=np.float64)
                if world.ndim != 3 or world.shape[1:] != (32, 3):
                    raise ValueError(
                        f"{path}: positions_3d[{subject!r}][{stem!r}] has shape {world.shape}, expected (N, 32, 3)"
                    )
                _check_finite(world, path, f"positions_3d[{subject!r}][{stem!r}]")
                takes.append((subject, stem, to_h36m17(world, "h36m32")))
        return takes


def _check_finite(array: np.ndarray, path: Path, key: str) -> None:
    """Raise ValueError naming ``path`` and ``key`` when a frame of ``array`` (N, J, C) is not finite as float32,
    the store's dtype (a float64 beyond float32's range would become inf there)."""
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(np.asarray(array, np.float32)).all(axis=(1, 2))
    if bad.any():
        raise ValueError(
            f"{path}: {key} has non-finite values in {int(bad.sum())} frames (first: {int(np.argmax(bad))})"
        )


def _take_detections(table: dict, subject: str, stem: str, frames: int, path: Path) -> list[np.ndarray]:
    """The 4 per-camera detection arrays of one take, trimmed to the mocap length as VideoPose3D does
    (``run.py``: detections may run a few frames past the motion capture; fewer frames is an error)."""
    try:
        per_camera = table[subject][stem]
    except KeyError:
        raise KeyError(f"{path}: no detections for {subject} {stem!r}") from None
    if len(per_camera) != 4:
        raise ValueError(f"{path}: {subject} {stem!r} has detections for {len(per_camera)} cameras, expected 4")
    out = []
    for cam, det in enumerate(per_camera):
        det = np.asarray(det, dtype=np.float32)
        if det.ndim != 3 or det.shape[1] != 17 or det.shape[2] not in (2, 3) or len(det) < frames:
            raise ValueError(
                f"{path}: {subject} {stem!r} camera {cam}: detections of shape {det.shape}, "
                f"expected ({frames} or more, 17, 2 or 3)"
            )
        out.append(det[:frames])
    return out


def stacked_hourglass_detections(folder: Path, stem: str, cameras: list[Camera], frames: int) -> list[np.ndarray]:
    """The 4 per-camera Stacked Hourglass detection arrays of one take (module docstring).

    Args:
        folder: ``S<n>/StackedHourglass``; stem: the 3D file's stem (``"Walking 1"``); cameras: the subject's
            4 cameras (their ids name the files); frames: the take's 3D frame count.

    Returns:
        4 arrays (N, 17, 3) float32: pixels in Human3.6M-17 order and the confidence.

    Raises:
        FileNotFoundError / KeyError / ValueError: a missing file or dataset, a wrong shape or frame count,
            non-finite values (naming the file).
    """
    out = []
    for cam in cameras:
        path = folder / f"{stem.replace(' ', '_')}.{cam.id}.h5"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no Stacked Hourglass detections of camera {cam.id} for take {stem!r}")
        with open_h5(path) as fh:
            if "poses" not in fh:
                raise KeyError(f"{path}: no dataset 'poses' (has {sorted(fh)})")
            poses = np.asarray(fh["poses"][:], dtype=np.float64)
        if poses.shape != (frames, len(MPII16), 2):
            raise ValueError(
                f"{path}: 'poses' has shape {poses.shape}, expected ({frames}, 16, 2): the take's 3D "
                f"has {frames} frames"
            )
        det = np.ones((frames, 17, 3), np.float32)
        det[..., :2] = mpii16_to_h36m17(poses)
        _check_finite(det, path, "poses")
        det[:, NECK_NOSE, 2] = 0.0  # derived, not detected
        out.append(det)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", nargs="+", help="subjects to convert, e.g. S1 S11 (default: all)")
    parser.add_argument(
        "--cameras", type=Path, help="cameras.h5 (default: SRC/cameras.h5, else the published calibration)"
    )
    parser.add_argument(
        "--detections",
        help="2D detections to store instead of the ground-truth projection: "
        "'sh' for the Stacked Hourglass files beside the 3D (S*/StackedHourglass/), or a VideoPose3D "
        "data_2d_h36m_<name>.npz (e.g. CPN)",
    )


def reader_from_args(args: argparse.Namespace) -> H36MReader:
    detections = args.detections
    if detections is not None and detections != STACKED_HOURGLASS:
        detections = Path(detections)
        if not detections.is_file():
            raise FileNotFoundError(f"--detections {detections}: no such file (give 'sh' or a data_2d_h36m_<name>.npz)")
    if args.cameras is not None and not args.cameras.is_file():
        raise FileNotFoundError(f"--cameras {args.cameras}: no such file (Human3.6M's cameras.h5)")
    return H36MReader(
        subjects=tuple(args.subjects) if args.subjects else None, cameras_file=args.cameras, detections=detections
    )
