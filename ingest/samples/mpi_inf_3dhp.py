"""Embedded default data: a small synthetic MPI-INF-3DHP in the dataset's native files.

Writes under ``OUT/mpi_inf_3dhp/``:

* ``S1/Seq1`` (25 fps) and ``S1/Seq2`` (50 fps, the rates of ``mpii_get_sequence_info``): ``annot.mat`` in
  MATLAB v5 (scipy) with the real structure (``annot2``, ``annot3``, ``univ_annot3`` as (14, 1) cells of
  (F, 56) / (F, 84) rows, ``cameras`` (1, 14), ``frames`` (F, 1)) and ``camera.calibration`` in the
  Skeletool V1.0 text format, for 14 plausible studio cameras (:func:`studio_cameras`).
* ``TS1`` (2048 x 2048) and ``TS5`` (1920 x 1080): ``annot_data.mat`` in MATLAB v7.3, i.e. HDF5 with
  MATLAB's 512-byte user block and ``MATLAB_class`` attributes, arrays stored with MATLAB's axes reversed
  (``annot2`` (N, 1, 17, 2), ``annot3`` / ``univ_annot3`` (N, 1, 17, 3), ``valid_frame`` and
  ``activity_annotation`` (N, 1)), plus ``test_util/camera_calibration/ts*.calib`` in the "tc camera
  calibration v0.3" format with the published test-camera numbers.

The motion is :func:`ingest.samples.motion.walking_motion` (Human3.6M-32, metres, z up), turned into the 3DHP
studio's y-up world (``(x, y, z) -> (x, z, -y)``, as the real calibration's ``up`` vectors show) and into the
28 3DHP joints by :func:`mpi28_from_h36m32`. ``annot3`` is each camera's view of it in millimetres,
``annot2`` its pinhole projection (the README: annot3 reprojects onto annot2), ``univ_annot3`` the pose
scaled about the pelvis by :data:`UNIVERSAL_SCALE` (a stand-in for the rescaling to the universal skeleton).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.io

from ingest.atomic import atomic_path, write_text
from ingest.camera import Camera
from ingest.mpi_inf_3dhp import TEST_FPS, TRAIN_SEQUENCES
from ingest.mpi_inf_3dhp_calib import (
    SKELETOOL_HEADER,
    TC_HEADER,
    TEST_CALIBRATION_FILE,
    TEST_CAMERA_FACTS,
    TEST_IMAGE_SIZE,
    tc_camera,
)
from ingest.samples.motion import walking_motion
from ingest.skeleton import MPI_INF_3DHP28_TO_17

TRAIN_TAKES = ((1, 1), (1, 2))
TEST_TAKES = ("TS1", "TS5")
SECONDS = 3.0
UNIVERSAL_SCALE = 1.04
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def mpi28_from_h36m32(j32: np.ndarray) -> np.ndarray:
    """Derive the 28 MPI-INF-3DHP joints from Human3.6M-32 joints: (..., 32, 3) -> (..., 28, 3).

    Joints with a Human3.6M counterpart take it (pelvis, spine, hips, knees, ankles, shoulders, elbows,
    wrists; 3DHP neck = H36M thorax, head = neck/nose, head_top = head, the correspondence of
    ``ingest.skeleton.TO_H36M17``); feet = H36M toe, toes = toe site, hands = hand site; spine2, spine3,
    spine4
    lie at 1/4, 1/2, 3/4 of the way from spine to neck, and each clavicle halfway from neck to shoulder.
    """
    spine, neck = j32[..., 12, :], j32[..., 13, :]
    out = np.empty((*j32.shape[:-2], 28, 3))
    out[..., 0, :] = spine + 0.5 * (neck - spine)  # spine3
    out[..., 1, :] = spine + 0.75 * (neck - spine)  # spine4
    out[..., 2, :] = spine + 0.25 * (neck - spine)  # spine2
    for i, h in ((3, 12), (4, 0), (5, 13), (6, 14), (7, 15)):  # spine, pelvis, neck, head, head_top
        out[..., i, :] = j32[..., h, :]
    for first, (shoulder, elbow, wrist, hand) in ((8, (17, 18, 19, 23)), (13, (25, 26, 27, 31))):
        out[..., first, :] = 0.5 * (neck + j32[..., shoulder, :])  # clavicle
        out[..., first + 1 : first + 5, :] = j32[..., [shoulder, elbow, wrist, hand], :]
    for first, leg in ((18, (6, 7, 8, 9, 10)), (23, (1, 2, 3, 4, 5))):  # hip, knee, ankle, foot, toe
        out[..., first : first + 5, :] = j32[..., list(leg), :]
    return out


def _look_at(centre, target, f, c, index) -> Camera:
    """Camera at ``centre`` (m, y-up world) looking at ``target``: rows right, down, forward."""
    centre, target = np.asarray(centre, float), np.asarray(target, float)
    forward = (target - centre) / np.linalg.norm(target - centre)
    up = np.array([0.0, 1.0, 0.0]) if abs(forward[1]) < 0.95 else np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])
    return Camera(
        R=R,
        T=centre,
        f=np.asarray(f, float),
        c=np.asarray(c, float),
        width=2048,
        height=2048,
        id=f"cam_{index}",
    )


def studio_cameras() -> dict[int, Camera]:
    """14 plausible studio cameras (the layout of the 3DV 2017 paper: 5 at chest height, 5 high and angled
    down, 1 at knee height angled up, 3 on the ceiling), 2048 x 2048, focal lengths near 1500 px."""
    cameras = {}
    for i in range(14):
        if i < 5:
            centre, target = (4.0, 1.3, 2 * np.pi * i / 5), (0.0, 1.0, 0.0)
        elif i < 10:
            centre, target = (3.8, 2.6, 2 * np.pi * (i - 5) / 5 + 0.6), (0.0, 0.9, 0.0)
        elif i == 10:
            centre, target = (4.0, 0.5, 0.3), (0.0, 1.2, 0.0)
        else:
            centre, target = (0.6, 4.2, 2 * np.pi * (i - 11) / 3), (0.0, 0.0, 0.0)
        radius, height, azimuth = centre
        fx = 1490.0 + 3.0 * i
        cameras[i] = _look_at(
            (radius * np.cos(azimuth), height, radius * np.sin(azimuth)),
            target,
            (fx, fx * 1.0004),
            (1024.0 + 5 * (i % 3 - 1), 1024.0 - 4 * (i % 5 - 2)),
            i,
        )
    return cameras


def ts_camera_of(name: str) -> Camera:
    """The published camera of test sequence ``name`` (pinhole), as the reader builds it."""
    return tc_camera(TEST_CAMERA_FACTS[TEST_CALIBRATION_FILE[name]], *TEST_IMAGE_SIZE[name])[0]


def train_motion(subject: int, seq: int) -> tuple[np.ndarray, float]:
    """Synthetic world motion of a training take: ((N, 32, 3) Human3.6M-32, metres, y up; fps)."""
    fps = TRAIN_SEQUENCES[subject, seq][0]
    motion = walking_motion(int(SECONDS * fps), fps=fps, seed=10 * subject + seq)
    return motion @ Z_UP_TO_Y_UP.T, float(fps)


def ts_motion(name: str) -> tuple[np.ndarray, float]:
    """Synthetic world motion of a test sequence: ((N, 32, 3) Human3.6M-32, metres, y up; fps)."""
    fps = TEST_FPS[name]
    motion = walking_motion(int(SECONDS * fps), fps=fps, seed=100 + int(name[2:]))
    return motion @ Z_UP_TO_Y_UP.T, float(fps)


def ts_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``valid_frame`` (the first 3 frames and every 7th invalid) and ``activity_annotation``
    (activities 1..7 in blocks of 10 frames) for n frames, both (n,) float64 as MATLAB stores them."""
    valid = np.ones(n)
    valid[:3] = 0
    valid[::7] = 0
    return valid, (np.arange(n) // 10) % 7 + 1.0


def universal(joints_mm: np.ndarray, pelvis: int) -> np.ndarray:
    """The stand-in ``univ_annot3``: joints scaled by :data:`UNIVERSAL_SCALE` about the pelvis."""
    root = joints_mm[..., pelvis : pelvis + 1, :]
    return root + UNIVERSAL_SCALE * (joints_mm - root)


def camera_views(camera: Camera, world28: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(annot3 in mm, annot2 in px) of (N, J, 3) world joints (m) seen by ``camera``."""
    cam = camera.world_to_camera(world28)
    return cam * 1000.0, camera.project(cam, distort=False)


def write_skeletool(path: Path, cameras: dict[int, Camera]) -> None:
    """Write ``camera.calibration`` (Skeletool V1.0; extrinsic world-to-camera in mm)."""
    lines = [SKELETOOL_HEADER]
    for index, cam in cameras.items():
        K = np.eye(4)
        K[0, 0], K[1, 1], K[0, 2], K[1, 2] = cam.f[0], cam.f[1], cam.c[0], cam.c[1]
        E = np.eye(4)
        E[:3, :3], E[:3, 3] = cam.R, -cam.R @ cam.T * 1000.0
        lines += [
            f"name          {index}",
            "  sensor      10 10",
            f"  size        {cam.width} {cam.height}",
            "  animated    0",
            "  intrinsic   " + " ".join(f"{v:.12g}" for v in K.ravel()),
            "  extrinsic   " + " ".join(f"{v:.12g}" for v in E.ravel()),
            "  radial      0",
        ]
    write_text(path, "\n".join(lines) + "\n")


def write_tc(path: Path, fields: dict) -> None:
    """Write a one-camera "tc camera calibration v0.3" file from a :data:`TEST_CAMERA_FACTS` entry."""

    def row(key, values):
        return f"\t\t{key}\t" + " ".join(f"{v:.12g}" for v in np.atleast_1d(values))

    lines = [
        TC_HEADER,
        f"camera\t0\t{fields['name']}",
        "\tframe\t0",
        row("sensorSize", fields["sensorSize"]) + "\t# in mm",
        row("focalLength", fields["focalLength"]),
        row("pixelAspect", fields["pixelAspect"]),
        row("centerOffset", fields["centerOffset"]),
        "\t\tdistortionModel\tOpenCV",
        row("distortion", fields["distortion"]),
        "\t" + row("origin", fields["origin"]),
        "\t" + row("up", fields["up"]),
        "\t" + row("right", fields["right"]),
    ]
    write_text(path, "\n".join(lines) + "\n")


def _cells(arrays: list[np.ndarray]) -> np.ndarray:
    cells = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        cells[i, 0] = a
    return cells


def write_annot_mat(path: Path, cameras: dict[int, Camera], world32: np.ndarray) -> None:
    """Write a training ``annot.mat`` (MATLAB v5) for ``world32`` (N, 32, 3) metres seen by ``cameras``."""
    world28 = mpi28_from_h36m32(world32)
    views = [camera_views(cameras[i], world28) for i in sorted(cameras)]
    n = len(world32)
    variables = {
        "annot2": _cells([a2.reshape(n, 56) for _, a2 in views]),
        "annot3": _cells([a3.reshape(n, 84) for a3, _ in views]),
        "univ_annot3": _cells([universal(a3, 4).reshape(n, 84) for a3, _ in views]),
        "cameras": np.array([sorted(cameras)], dtype=np.float64),
        "frames": np.arange(n, dtype=np.float64)[:, None],
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        scipy.io.savemat(fh, variables, format="5")


def write_v73(path: Path, variables: dict[str, np.ndarray]) -> None:
    """Write ``variables`` (already in h5py's axis order, i.e. MATLAB's reversed) as a MATLAB v7.3 file:
    HDF5 with a 512-byte user block holding MATLAB's 128-byte header (version 0x0200, ``IM``)."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as fh:
            for key, value in variables.items():
                fh.create_dataset(key, data=np.asarray(value, dtype=np.float64))
                fh[key].attrs["MATLAB_class"] = np.bytes_("double")
        with open(tmp, "r+b") as fh:
            fh.write(text.ljust(116) + b" " * 8 + b"\x00\x02IM")


def write_annot_data_mat(
    path: Path, camera: Camera, world32: np.ndarray, valid: np.ndarray, activity: np.ndarray
) -> None:
    """Write a test ``annot_data.mat`` (MATLAB v7.3) for ``world32`` (N, 32, 3) metres seen by ``camera``."""
    annot3, annot2 = camera_views(camera, mpi28_from_h36m32(world32)[:, MPI_INF_3DHP28_TO_17])
    write_v73(
        path,
        {
            "annot2": annot2[:, None],
            "annot3": annot3[:, None],
            "univ_annot3": universal(annot3, 14)[:, None],
            "valid_frame": valid[:, None],
            "activity_annotation": activity[:, None],
        },
    )


def write(out: Path) -> None:
    """Write the synthetic MPI-INF-3DHP under ``out/mpi_inf_3dhp`` (module docstring)."""
    root = Path(out) / "mpi_inf_3dhp"
    cameras = studio_cameras()
    for subject, seq in TRAIN_TAKES:
        folder = root / f"S{subject}" / f"Seq{seq}"
        folder.mkdir(parents=True, exist_ok=True)
        write_skeletool(folder / "camera.calibration", cameras)
        write_annot_mat(folder / "annot.mat", cameras, train_motion(subject, seq)[0])
    calib_dir = root / "test_util" / "camera_calibration"
    calib_dir.mkdir(parents=True, exist_ok=True)
    for name, fields in TEST_CAMERA_FACTS.items():
        write_tc(calib_dir / name, fields)
    for name in TEST_TAKES:
        (root / name).mkdir(parents=True, exist_ok=True)
        world = ts_motion(name)[0]
        write_annot_data_mat(root / name / "annot_data.mat", ts_camera_of(name), world, *ts_labels(len(world)))
