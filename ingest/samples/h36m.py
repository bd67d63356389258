"""Embedded default data: a small synthetic Human3.6M in the native Martinez layout.

Writes ``OUT/h36m/S<n>/MyPoses/3D_positions/<Action>[ <k>].h5`` (``3D_positions`` (96, N) float64,
millimetres, world coordinates, 50 fps) and ``OUT/h36m/cameras.h5`` (the published calibration in the
dataset's own layout: ``R`` transposed, ``T`` in mm, ``Name`` as uint8 characters), so the reader is
exercised on the real formats. Motions come from :func:`ingest.samples.motion.walking_motion`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ingest.camera import h36m_published_cameras
from ingest.samples.motion import walking_motion

# Two train subjects and one test subject; a few takes each, named as in the real release.
SUBJECTS = ("S1", "S5", "S11")
TAKES = ("Walking 1", "Directions 1", "Greeting", "Eating 2")
FRAMES = 600  # 12 s at 50 fps


def write_take(path: Path, world_m: np.ndarray) -> None:
    """Write one take: (N, 32, 3) world metres -> ``3D_positions`` (96, N) millimetres."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("3D_positions", data=(world_m * 1000.0).reshape(len(world_m), 96).T)


def write_cameras(path: Path, subjects: tuple[str, ...]) -> None:
    """Write ``cameras.h5`` for ``subjects`` from the published calibration, in the dataset's layout."""
    published = h36m_published_cameras()
    with h5py.File(path, "w") as fh:
        for subject in subjects:
            for m, cam in enumerate(published[subject], start=1):
                g = fh.create_group(f"subject{subject[1:]}/camera{m}")
                g["R"] = cam.R.T
                g["T"] = (cam.T * 1000.0).reshape(3, 1)
                g["f"], g["c"] = cam.f.reshape(2, 1), cam.c.reshape(2, 1)
                g["k"], g["p"] = cam.k.reshape(3, 1), cam.p.reshape(2, 1)
                g["Name"] = np.array([ord(ch) for ch in cam.id], dtype=np.uint8).reshape(8, 1)


def write(out: Path) -> None:
    """Write the synthetic Human3.6M under ``out/h36m``."""
    root = Path(out) / "h36m"
    for s, subject in enumerate(SUBJECTS):
        for t, take in enumerate(TAKES):
            motion = walking_motion(FRAMES, seed=100 * s + t)
            write_take(root / subject / "MyPoses" / "3D_positions" / f"{take}.h5", motion)
    write_cameras(root / "cameras.h5", SUBJECTS)
