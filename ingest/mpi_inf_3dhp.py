"""MPI-INF-3DHP reader: the training set's ``annot.mat`` and the test set's ``annot_data.mat``, to the store.

Layouts (the dataset's README and toolkit, Arka-h/mpi-inf-3dhp ``README.txt``, ``util/mpii_get_*.m``; the test
set's README and ``test_util/mpii_test_predictions_py.m`` as shipped in P-STMO ``3dhp_test/``; cross-checked
with P-STMO ``common/data_to_npz_3dhp*.py`` and mmpose
``tools/dataset_converters/preprocess_mpi_inf_3dhp.py``):

* Training, ``S<1..8>/Seq<1,2>/annot.mat``, MATLAB v5 (scipy): ``annot2``, ``annot3``, ``univ_annot3`` are
  (14, 1) cells, one per camera, of (F, 56) pixels ``x1 y1 x2 y2 ...`` and (F, 84) millimetres in that
  camera's coordinates ``x1 y1 z1 ...`` for the 28 joints of ``ingest.skeleton.MPI_INF_3DHP28``; ``cameras``
  (1, 14) the camera index of each cell; ``frames`` (F, 1) the frame number of each row. Only the first
  ``num_frames`` rows of ``mpii_get_sequence_info`` are kept (README: a few trailing rows may have no video
  frame). Intrinsics, extrinsics and image size (2048 x 2048) from ``camera.calibration``
  (``ingest.mpi_inf_3dhp_calib``). ``univ_annot3`` is rescaled to the universal (Human3.6M) skeleton; the
  README warns that unlike ``annot3`` it does not reproject onto ``annot2``, so with the default
  ``annot="univ_annot3"`` the stored 2D is not the projection of the stored 3D (with ``annot3`` it is).
* Test, ``TS<1..6>/annot_data.mat``, MATLAB v7.3 (HDF5, h5py): MATLAB's ``annot2`` 2x17x1xN, ``annot3`` and
  ``univ_annot3`` 3x17x1xN (mm, camera coordinates), ``valid_frame`` and ``activity_annotation`` (1..7,
  ``mpii_get_activity_name.m``) 1xN. HDF5 stores MATLAB's column-major arrays with the axes reversed, so h5py
  sees (N, 1, 17, 2), (N, 1, 17, 3) and (N, 1). 17 joints in ``MPI_INF_3DHP17`` order.

Each (subject, sequence, camera) of the training set and each test sequence becomes one store sequence:
3D in metres (camera coordinates) and 2D = the dataset's ``annot2`` with confidence 1, both reordered to
Human3.6M-17 (``ingest.skeleton.TO_H36M17``). Per-frame arrays ``valid`` (bool) and ``activity`` (int32)
are stored for every sequence: the test set's ``valid_frame`` and ``activity_annotation``; for training
sequences ``valid`` is True and ``activity`` is :data:`NO_ACTIVITY` (-1: the training set has no per-frame
activity labels, only activity sets per sequence, README).

Frame rate: training rates come from ``mpii_get_sequence_info`` (25 or 50 fps). The toolkit states no rate
for the test set; :data:`TEST_FPS` assumes the studio's 25 fps for TS1-TS4 and 50 fps for the outdoor
TS5-TS6. Everything is resampled to the store's 50 fps by linear interpolation; a 25 fps source frame i
lands on store frame 2 i and the frames in between are interpolated (2D as well, so only source frames are
exact projections). Interpolated test frames get ``valid = False``, so evaluating on valid frames uses
exactly the toolkit's frames; their activity is that of the preceding source frame.

NaN rule: a source row with any non-finite 2D or 3D value among the 17 kept joints is dropped and the
sequence is split there: each run of finite rows becomes its own sequence with id suffix ``_part<k>``,
metadata ``source_rows`` ([start, stop) rows of the source) and ``nan_rows`` (rows dropped from that
camera's sequence), and a warning is logged. A file whose rows are all non-finite raises
:class:`ingest.job.DroppedByRule`.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import matfile_version

from ingest.camera import Camera
from ingest.conventions import STORE_FPS, resample_times
from ingest.job import DroppedByRule
from ingest.mpi_inf_3dhp_calib import parse_skeletool, ts_camera
from ingest.skeleton import to_h36m17
from ingest.store import Sequence, safe_name
from ingest.untrusted import foreign_errors, open_h5

log = logging.getLogger(__name__)

NO_ACTIVITY = -1
# (subject, sequence) -> (fps, num_frames), the toolkit's mpii_get_sequence_info (also P-STMO utils_3dhp.py
# and mmpose train_frame_nums).
TRAIN_SEQUENCES = {
    (1, 1): (25, 6416),
    (1, 2): (50, 12430),
    (2, 1): (25, 6502),
    (2, 2): (25, 6081),
    (3, 1): (50, 12488),
    (3, 2): (50, 12283),
    (4, 1): (25, 6171),
    (4, 2): (25, 6675),
    (5, 1): (50, 12820),
    (5, 2): (50, 12312),
    (6, 1): (25, 6188),
    (6, 2): (25, 6145),
    (7, 1): (25, 6239),
    (7, 2): (25, 6320),
    (8, 1): (25, 6468),
    (8, 2): (25, 6054),
}
# Assumed test-set frame rates (module docstring): not stated by the toolkit.
TEST_FPS = {"TS1": 25, "TS2": 25, "TS3": 25, "TS4": 25, "TS5": 50, "TS6": 50}
# Camera sets of the toolkit's mpii_get_camera_set; 'vnect' (0, 1, 2, 4, 5, 6, 7, 8) is the set the lifting
# literature (P-STMO, MPM, mmpose) trains on, 'all' the 14 cameras.
CAMERA_SETS = {
    "vnect": (0, 1, 2, 4, 5, 6, 7, 8),
    "all": tuple(range(14)),
    "regular": tuple(range(14)),
    "relevant": tuple(range(11)),
    "ceiling": (11, 12, 13),
    "mm3d_chest": (0, 2, 4, 7, 8),
}
ANNOT_CHOICES = ("univ_annot3", "annot3")
_TRAIN_DIRS = re.compile(r"S(\d+)/Seq(\d+)")
_TEST_DIR = re.compile(r"TS(\d+)")


def camera_set(spec: str | list[str] | tuple[int, ...]) -> tuple[int, ...]:
    """Camera indices from a toolkit set name (:data:`CAMERA_SETS`) or a list of indices 0..13.

    Raises:
        ValueError for an unknown name or an index outside 0..13.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    if len(items) == 1 and str(items[0]) in CAMERA_SETS:
        return CAMERA_SETS[str(items[0])]
    try:
        cams = tuple(int(c) for c in items)
    except ValueError:
        raise ValueError(f"camera set {spec!r}: neither a set name {sorted(CAMERA_SETS)} nor indices") from None
    if not cams or any(c < 0 or c > 13 for c in cams):
        raise ValueError(f"camera set {spec!r}: camera indices must lie in 0..13")
    return cams


def mat_version(path: Path) -> str:
    """``"v7.3"`` for an HDF5-based MAT file, ``"v5"`` / ``"v4"`` for the older formats.

    Raises:
        ValueError naming the file when it is not a MAT file.
    """
    if h5py.is_hdf5(path):
        return "v7.3"
    with foreign_errors(path, "not a MATLAB file", ValueError), open(path, "rb") as fh:  # scipy raises many types
        major, _ = matfile_version(fh)
    return {0: "v4", 1: "v5"}.get(major, f"v{major}")


def _require_version(path: Path, expected: str, reader: str) -> None:
    found = mat_version(path)
    if found != expected:
        raise ValueError(
            f"{path}: is a MATLAB {found} file, but {path.name} of MPI-INF-3DHP must be MATLAB "
            f"{expected} (read with {reader})"
        )


def _finite_runs(finite: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a (N,) bool array."""
    edges = np.diff(np.concatenate([[0], finite.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def build_sequences(
    path: Path,
    base_id: str,
    meta: dict,
    camera: Camera,
    pose3d_mm: np.ndarray,
    pose2d_px: np.ndarray,
    fps: float,
    valid: np.ndarray | None = None,
    activity: np.ndarray | None = None,
) -> list[Sequence]:
    """One camera's annotations to store sequences: NaN rule, mm -> m, resampling to 50 fps.

    Args:
        path: source file, for messages.
        base_id: sequence id, suffixed ``_part<k>`` when the NaN rule splits the sequence.
        meta: sequence metadata without ``id``, ``fps`` and the camera's keys.
        camera: intrinsics (and extrinsics) stored with the sequence.
        pose3d_mm: (N, 17, 3) millimetres, camera coordinates, Human3.6M-17 order.
        pose2d_px: (N, 17, 2) pixels, Human3.6M-17 order.
        fps: source frame rate.
        valid, activity: (N,) per-frame test annotations; None for training (True / :data:`NO_ACTIVITY`).

    Returns:
        one :class:`Sequence` per run of finite rows (module docstring), possibly none.
    """
    n = len(pose3d_mm)
    finite = np.isfinite(pose3d_mm).all(axis=(1, 2)) & np.isfinite(pose2d_px).all(axis=(1, 2))
    runs = _finite_runs(finite)
    dropped = int(n - finite.sum())
    if dropped:
        log.warning(
            "%s: %s: dropped %d of %d rows with non-finite values; kept %d runs %s",
            path,
            base_id,
            dropped,
            n,
            len(runs),
            runs,
        )
    sequences = []
    for k, (a, b) in enumerate(runs):
        i0, i1, w = resample_times(b - a, fps)
        i0, i1 = i0 + a, i1 + a
        wj = w[:, None, None]
        pose3d = (pose3d_mm[i0] * (1 - wj) + pose3d_mm[i1] * wj) / 1000.0
        pose2d = np.ones((len(i0), pose2d_px.shape[1], 3), np.float32)
        pose2d[..., :2] = pose2d_px[i0] * (1 - wj) + pose2d_px[i1] * wj
        if valid is None:
            frames = {"valid": np.ones(len(i0), bool), "activity": np.full(len(i0), NO_ACTIVITY, np.int32)}
        else:
            frames = {"valid": valid[i0] & (w == 0), "activity": activity[i0].astype(np.int32)}
        seq_id = base_id if dropped == 0 else f"{base_id}_part{k}"
        sequences.append(
            Sequence(
                meta={
                    **meta,
                    "id": safe_name(seq_id),
                    "fps": STORE_FPS,
                    "source_fps": float(fps),
                    "source_rows": [a, b],
                    "nan_rows": dropped,
                    **camera.to_meta(),
                },
                pose3d=pose3d.astype(np.float32),
                pose2d=pose2d,
                frames=frames,
            )
        )
    return sequences


def _cell_joints(path: Path, key: str, camera: int, cell, dims: int) -> np.ndarray:
    """One camera's (F, 28 * dims) cell -> (F, 28, dims) float64."""
    arr = np.asarray(cell, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 28 * dims:
        raise ValueError(f"{path}: {key} of camera {camera} has shape {arr.shape}, expected (F, {28 * dims})")
    return arr.reshape(len(arr), 28, dims)


def _h5_joints(fh: h5py.File, path: Path, key: str, dims: int) -> np.ndarray:
    """A test-set joint array as h5py sees it, (N, 1, 17, dims), -> (N, 17, dims) float64."""
    arr = np.asarray(fh[key][()], dtype=np.float64)
    if arr.ndim not in (3, 4) or arr.shape[-2:] != (17, dims) or (arr.ndim == 4 and arr.shape[1] != 1):
        raise ValueError(
            f"{path}: {key} has shape {arr.shape} in HDF5, expected (N, 1, 17, {dims}) (MATLAB {dims}x17x1xN)"
        )
    return arr.reshape(len(arr), 17, dims)


def _h5_vector(fh: h5py.File, path: Path, key: str, n: int) -> np.ndarray:
    arr = np.asarray(fh[key][()], dtype=np.float64)
    if arr.size != n or (arr.ndim == 2 and 1 not in arr.shape) or arr.ndim > 2:
        raise ValueError(f"{path}: {key} has shape {arr.shape}, expected {n} values (MATLAB 1x{n})")
    arr = arr.reshape(n)
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
        raise ValueError(f"{path}: {key} holds non-integer or non-finite values")
    return arr


@dataclass
class MPIINF3DHPReader:
    """Reader of MPI-INF-3DHP (module docstring). Options:

    cameras: training camera indices (default the 'vnect' set 0, 1, 2, 4, 5, 6, 7, 8).
    annot: 3D annotation to store, ``"univ_annot3"`` (default, as P-STMO and MPM) or ``"annot3"``.
    subjects: subjects / test sequences to convert (``("S1", "TS1")``); None for all present.
    """

    cameras: tuple[int, ...] = CAMERA_SETS["vnect"]
    annot: str = "univ_annot3"
    subjects: tuple[str, ...] | None = None
    dataset: str = "mpi_inf_3dhp"

    def __post_init__(self):
        if self.annot not in ANNOT_CHOICES:
            raise ValueError(f"annot must be one of {ANNOT_CHOICES}, got {self.annot!r}")

    def sources(self, src: Path) -> list[Path]:
        """``S<n>/Seq<k>/annot.mat`` in ``src`` or one folder below it (e.g. ``SRC/train/S1/Seq1``) and
        ``TS<n>/annot_data.mat`` up to two folders below (e.g. ``SRC/mpi_inf_3dhp_test_set/TS1``), sorted,
        restricted to :attr:`subjects`. Raises FileNotFoundError naming ``src`` when there are none."""
        src = Path(src)
        found = set()
        for pattern in (
            "S*/Seq*/annot.mat",
            "*/S*/Seq*/annot.mat",
            "TS*/annot_data.mat",
            "*/TS*/annot_data.mat",
            "*/*/TS*/annot_data.mat",
        ):
            found.update(p for p in src.glob(pattern) if self._kind(p))
        files = sorted(p for p in found if not self.subjects or self._subject(p) in self.subjects)
        if not files:
            which = f" for {', '.join(self.subjects)}" if self.subjects else ""
            raise FileNotFoundError(f"{src}: no MPI-INF-3DHP files (S*/Seq*/annot.mat or TS*/annot_data.mat{which})")
        return files

    @staticmethod
    def _kind(path: Path) -> str | None:
        if path.name == "annot.mat" and _TRAIN_DIRS.fullmatch("/".join(path.parts[-3:-1])):
            return "train"
        if path.name == "annot_data.mat" and _TEST_DIR.fullmatch(path.parent.name):
            return "test"
        return None

    def _subject(self, path: Path) -> str:
        return path.parts[-3] if self._kind(path) == "train" else path.parent.name

    def part_name(self, src: Path, path: Path) -> str:
        if self._kind(path) == "train":
            return safe_name(f"{path.parts[-3]}_{path.parts[-2]}")
        return safe_name(path.parent.name)

    def part_attrs(self, path: Path) -> dict:
        """The options a part was converted with (stored in the part's attributes by ``ingest.job``)."""
        cameras = list(self.cameras) if self._kind(Path(path)) == "train" else []
        return {"annot": self.annot, "cameras": cameras}

    def read(self, path: Path) -> list[Sequence]:
        path = Path(path)
        kind = self._kind(path)
        if kind is None:
            raise ValueError(
                f"{path}: not an MPI-INF-3DHP annotation file (S<n>/Seq<k>/annot.mat or TS<n>/annot_data.mat)"
            )
        sequences = self._read_train(path) if kind == "train" else self._read_test(path)
        if not sequences:
            raise DroppedByRule(f"{path}: every row of the selected annotations has non-finite values")
        return sequences

    def _read_train(self, path: Path) -> list[Sequence]:
        subject, seq = (int(g) for g in _TRAIN_DIRS.fullmatch("/".join(path.parts[-3:-1])).groups())
        if (subject, seq) not in TRAIN_SEQUENCES:
            raise ValueError(
                f"{path}: S{subject} Seq{seq} is not a training sequence of MPI-INF-3DHP "
                "(mpii_get_sequence_info knows S1-S8, Seq1-Seq2)"
            )
        fps, num_frames = TRAIN_SEQUENCES[subject, seq]
        _require_version(path, "v5", "scipy.io.loadmat")
        keys = ["annot2", self.annot, "cameras", "frames"]
        with foreign_errors(path, "cannot read the MATLAB v5 file", ValueError):  # scipy raises many types
            names = [name for name, _, _ in scipy.io.whosmat(path)]
            for key in keys:
                if key not in names:
                    raise KeyError(f"{path}: no variable {key!r} (has {sorted(names)})")
            mat = scipy.io.loadmat(path, variable_names=keys)
        indices = np.asarray(mat["cameras"]).ravel().astype(int).tolist()
        cells2, cells3 = np.asarray(mat["annot2"]).ravel(), np.asarray(mat[self.annot]).ravel()
        for key, cells in (("annot2", cells2), (self.annot, cells3)):
            if cells.dtype != object or len(cells) != len(indices):
                raise ValueError(
                    f"{path}: {key} is not a cell array with one cell per camera of 'cameras' ({len(indices)})"
                )
        calib_path = path.parent / "camera.calibration"
        if not calib_path.is_file():
            raise FileNotFoundError(f"{path}: no camera.calibration next to it ({calib_path})")
        calib = parse_skeletool(calib_path)
        rows = np.asarray(mat["frames"]).size
        sequences = []
        for cam in self.cameras:
            if cam not in indices:
                raise KeyError(f"{path}: camera {cam} is not in 'cameras' {indices}")
            if cam not in calib:
                raise KeyError(f"{calib_path}: no calibration for camera {cam} (has {sorted(calib)})")
            i = indices.index(cam)
            a2 = _cell_joints(path, "annot2", cam, cells2[i], 2)
            a3 = _cell_joints(path, self.annot, cam, cells3[i], 3)
            if len(a2) != len(a3) or len(a2) != rows:
                raise ValueError(
                    f"{path}: camera {cam} has {len(a2)} rows of annot2, {len(a3)} of {self.annot} "
                    f"and 'frames' has {rows}; they must match"
                )
            n = min(len(a2), num_frames)
            camera = calib[cam]
            meta = {
                "subject": f"S{subject}",
                "action": f"Seq{seq}",
                "take": seq,
                "split": "train",
                "source": str(path),
                "dataset": self.dataset,
                "calibration": str(calib_path),
                "camera_index": cam,
                "pose3d_source": self.annot,
                "pose2d_source": "annot2",
            }
            sequences += build_sequences(
                path,
                f"S{subject}_Seq{seq}_{camera.id}",
                meta,
                camera,
                to_h36m17(a3[:n], "mpi_inf_3dhp28"),
                to_h36m17(a2[:n], "mpi_inf_3dhp28"),
                fps,
            )
        return sequences

    def _read_test(self, path: Path) -> list[Sequence]:
        name = f"TS{int(_TEST_DIR.fullmatch(path.parent.name).group(1))}"
        if name not in TEST_FPS:
            raise ValueError(f"{path}: {path.parent.name} is not a test sequence of MPI-INF-3DHP (TS1-TS6)")
        _require_version(path, "v7.3", "h5py")
        with open_h5(path) as fh:
            for key in ("annot2", self.annot, "valid_frame", "activity_annotation"):
                if key not in fh:
                    raise KeyError(f"{path}: no variable {key!r} (has {sorted(fh)})")
            a2 = _h5_joints(fh, path, "annot2", 2)
            a3 = _h5_joints(fh, path, self.annot, 3)
            if len(a2) != len(a3):
                raise ValueError(f"{path}: annot2 has {len(a2)} frames, {self.annot} {len(a3)}; they must match")
            valid = _h5_vector(fh, path, "valid_frame", len(a2)) != 0
            activity = _h5_vector(fh, path, "activity_annotation", len(a2)).astype(np.int32)
        camera, distortion, calibration = ts_camera(name, path.parents[1] / "test_util" / "camera_calibration")
        meta = {
            "subject": name,
            "action": name,
            "take": 0,
            "split": "test",
            "source": str(path),
            "dataset": self.dataset,
            "calibration": calibration,
            "distortion_opencv": distortion.tolist(),
            "pose3d_source": self.annot,
            "pose2d_source": "annot2",
        }
        return build_sequences(
            path,
            f"{name}_{camera.id}",
            meta,
            camera,
            to_h36m17(a3, "mpi_inf_3dhp17"),
            to_h36m17(a2, "mpi_inf_3dhp17"),
            TEST_FPS[name],
            valid,
            activity,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cameras",
        nargs="+",
        default=["vnect"],
        help=f"training cameras: a toolkit set name {sorted(CAMERA_SETS)} or indices 0..13 "
        "(default: vnect = 0 1 2 4 5 6 7 8; 'all' = the 14 cameras)",
    )
    parser.add_argument(
        "--annot",
        choices=ANNOT_CHOICES,
        default="univ_annot3",
        help="3D annotation to store (default: univ_annot3, as P-STMO and MPM)",
    )
    parser.add_argument("--subjects", nargs="+", help="subjects / test sequences, e.g. S1 S2 TS1 (default: all)")


def reader_from_args(args: argparse.Namespace) -> MPIINF3DHPReader:
    return MPIINF3DHPReader(
        cameras=camera_set(args.cameras),
        annot=args.annot,
        subjects=tuple(args.subjects) if args.subjects else None,
    )
