"""Pinhole camera with Human3.6M's lens-distortion model, and the published Human3.6M calibration.

Frames: world coordinates are the dataset's own; camera coordinates are x right, y down, z forward
(DESIGN.md). A camera maps world to camera as ``X_cam = R @ (X_world - T)`` with ``T`` the camera centre in
world coordinates. All lengths are metres; focal length and principal point are pixels.

Distortion follows the dataset's own projection code (Human3.6M ``ProjectPointRadTan``, checked on the real
``cameras.h5`` in ``../shared/data/README.md``): with normalised coordinates ``x = X/Z, y = Y/Z`` and
``r2 = x^2 + y^2``, ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3``, ``tan = p1 y + p2 x``,
``distorted = (x, y) * (radial + tan) + (p2, p1) * r2``, pixel ``= f * distorted + c``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

_CALIBRATION_FILE = Path(__file__).with_name("h36m_calibration.json")


@dataclass(frozen=True)
class Camera:
    """One calibrated camera.

    Attributes:
        R: (3, 3) rotation, world to camera.
        T: (3,) camera centre in world coordinates, metres.
        f: (2,) focal lengths fx, fy in pixels.
        c: (2,) principal point cx, cy in pixels.
        k: (3,) radial distortion k1, k2, k3.
        p: (2,) tangential distortion p1, p2 in Human3.6M's order (VideoPose3D lists them as p2, p1).
        width, height: image size in pixels.
        id: camera name, e.g. ``"54138969"``.
    """

    R: np.ndarray
    T: np.ndarray
    f: np.ndarray
    c: np.ndarray
    k: np.ndarray = field(default_factory=lambda: np.zeros(3))
    p: np.ndarray = field(default_factory=lambda: np.zeros(2))
    width: int = 1000
    height: int = 1000
    id: str = ""

    def world_to_camera(self, X: np.ndarray) -> np.ndarray:
        """(..., 3) world points (m) -> (..., 3) camera coordinates (m)."""
        return (np.asarray(X, dtype=np.float64) - self.T) @ self.R.T

    def camera_to_world(self, X: np.ndarray) -> np.ndarray:
        """(..., 3) camera coordinates (m) -> (..., 3) world points (m); inverse of world_to_camera."""
        return np.asarray(X, dtype=np.float64) @ self.R + self.T

    def project(self, X: np.ndarray, distort: bool = True) -> np.ndarray:
        """Project camera-coordinate points to pixels.

        Args:
            X: (..., 3) points in camera coordinates, metres, with Z > 0.
            distort: apply the radial/tangential model (module docstring); False gives the pinhole image.

        Returns:
            (..., 2) float64 pixel coordinates (u right, v down).
        """
        X = np.asarray(X, dtype=np.float64)
        xy = X[..., :2] / X[..., 2:3]
        if distort:
            r2 = np.sum(xy**2, axis=-1, keepdims=True)
            radial = 1 + self.k[0] * r2 + self.k[1] * r2**2 + self.k[2] * r2**3
            tan = self.p[0] * xy[..., 1:2] + self.p[1] * xy[..., 0:1]
            xy = xy * (radial + tan) + np.array([self.p[1], self.p[0]]) * r2
        return xy * self.f + self.c

    def to_meta(self) -> dict:
        """JSON-ready intrinsics and extrinsics (lists), as stored in a sequence's metadata."""
        return {
            "camera": self.id, "width": int(self.width), "height": int(self.height),
            "f": self.f.tolist(), "c": self.c.tolist(), "k": self.k.tolist(), "p": self.p.tolist(),
            "R": self.R.tolist(), "T": self.T.tolist(),
        }

    @classmethod
    def from_meta(cls, meta: dict) -> Camera:
        """Inverse of :meth:`to_meta`; missing R/T give the identity pose at the origin."""
        return cls(
            R=np.asarray(meta.get("R", np.eye(3)), dtype=np.float64),
            T=np.asarray(meta.get("T", np.zeros(3)), dtype=np.float64),
            f=np.asarray(meta["f"], dtype=np.float64), c=np.asarray(meta["c"], dtype=np.float64),
            k=np.asarray(meta.get("k", np.zeros(3)), dtype=np.float64),
            p=np.asarray(meta.get("p", np.zeros(2)), dtype=np.float64),
            width=int(meta["width"]), height=int(meta["height"]), id=str(meta.get("camera", "")),
        )


def h36m_published_cameras() -> dict[str, list[Camera]]:
    """The published Human3.6M calibration, for use without ``cameras.h5``.

    Numbers are the dataset's calibration as released with VideoPose3D (``common/h36m_dataset.py``,
    Pavllo et al. 2019) and kept in ``h36m_calibration.json``: per camera id the intrinsics, per subject the
    orientation quaternion (w, x, y, z; rotates camera to world) and translation (mm). VideoPose3D's
    tangential pair is (p2, p1) and is reordered here.

    Returns:
        subject (``"S1"``, ...) -> its 4 cameras in the dataset's camera order (54138969, 55011271,
        58860488, 60457274). Subjects S2-S4 have no published calibration and are absent.
    """
    table = json.loads(_CALIBRATION_FILE.read_text())
    cameras: dict[str, list[Camera]] = {}
    for subject, extrinsics in table["extrinsics"].items():
        cams = []
        for intr, extr in zip(table["intrinsics"], extrinsics, strict=True):
            w, x, y, z = extr["orientation"]
            cam_to_world = Rotation.from_quat([x, y, z, w]).as_matrix()
            p2, p1 = intr["tangential_distortion"]
            cams.append(Camera(
                R=cam_to_world.T, T=np.asarray(extr["translation"]) / 1000.0,
                f=np.asarray(intr["focal_length"]), c=np.asarray(intr["center"]),
                k=np.asarray(intr["radial_distortion"]), p=np.array([p1, p2]),
                width=intr["res_w"], height=intr["res_h"], id=intr["id"],
            ))
        cameras[subject] = cams
    return cameras
