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
            "camera": self.id,
            "width": int(self.width),
            "height": int(self.height),
            "f": self.f.tolist(),
            "c": self.c.tolist(),
            "k": self.k.tolist(),
            "p": self.p.tolist(),
            "R": self.R.tolist(),
            "T": self.T.tolist(),
        }

    @classmethod
    def from_meta(cls, meta: dict) -> Camera:
        """Inverse of :meth:`to_meta`; missing R/T give the identity pose at the origin."""
        return cls(
            R=np.asarray(meta.get("R", np.eye(3)), dtype=np.float64),
            T=np.asarray(meta.get("T", np.zeros(3)), dtype=np.float64),
            f=np.asarray(meta["f"], dtype=np.float64),
            c=np.asarray(meta["c"], dtype=np.float64),
            k=np.asarray(meta.get("k", np.zeros(3)), dtype=np.float64),
            p=np.asarray(meta.get("p", np.zeros(2)), dtype=np.float64),
            width=int(meta["width"]),
            height=int(meta["height"]),
            id=str(meta.get("camera", "")),
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
            cams.append(
                Camera(
                    R=cam_to_world.T,
                    T=np.asarray(extr["translation"]) / 1000.0,
                    f=np.asarray(intr["focal_length"]),
                    c=np.asarray(intr["center"]),
                    k=np.asarray(intr["radial_distortion"]),
                    p=np.array([p1, p2]),
                    width=intr["res_w"],
                    height=intr["res_h"],
                    id=intr["id"],
                )
            )
        cameras[subject] = cams
    return cameras


def look_at_camera(
    eye: np.ndarray,
    target: np.ndarray,
    up: np.ndarray,
    f: np.ndarray,
    c: np.ndarray,
    width: int,
    height: int,
    id: str = "",
) -> Camera:
    """A distortion-free camera at ``eye`` looking at ``target`` with no roll.

    Camera axes (DESIGN.md): z forward = unit(target - eye), x right = unit(z x up), y down = z x x, so
    world ``up`` points up in the image (negative image y). World to camera: ``X_cam = R @ (X - eye)``.

    Args:
        eye, target: (3,) world points, metres. up: (3,) world up direction (AMASS: (0, 0, 1)).
        f, c: (2,) focal lengths and principal point, pixels. width, height: image size, pixels.

    Raises:
        ValueError when ``target`` coincides with ``eye`` or the view direction is parallel to ``up``.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = target - eye
    right = np.cross(forward, up)
    if np.linalg.norm(forward) < 1e-9 or np.linalg.norm(right) < 1e-9 * np.linalg.norm(forward):
        raise ValueError(f"look_at_camera: cannot look from {eye} at {target} with up {up}")
    z = forward / np.linalg.norm(forward)
    x = right / np.linalg.norm(right)
    R = np.stack([x, np.cross(z, x), z])
    return Camera(
        R=R, T=eye, f=np.asarray(f, np.float64), c=np.asarray(c, np.float64), width=width, height=height, id=id
    )


def virtual_cameras(
    points: np.ndarray,
    rng: np.random.Generator,
    k: int = 4,
    up_axis: int = 2,
    distance: tuple[float, float] = (2.5, 8.0),
    height: tuple[float, float] = (1.2, 1.7),
    margin: float = 0.05,
) -> list[Camera]:
    """``k`` static cameras around a moving body, placed like Human3.6M's real ones.

    Human3.6M's cameras stand 2.6 to 7.7 m from the subjects at about chest height, f about 1145 px,
    c near (512, 512), 1000 x 1000 images (``../shared/data/README.md``, VideoPose3D's calibration).
    Here: azimuths evenly spread with a random offset and jitter; distance uniform in ``distance`` from
    the target (the centre of the motion's horizontal extent at the body's mean height), eye height
    uniform in ``height`` above the lowest point; f uniform in 1140-1150 px, c uniform within 15 px of
    (512, 508), image 1000 x 1000, no distortion, no roll. A camera is moved back by 10% steps (up to
    60 m) until every point lies at least 0.5 m in front of it and inside the image shrunk by ``margin``.

    Args:
        points: (N, J, 3) world points, metres (the motion's joints).
        rng: source of randomness (seed it from the motion's id for reproducible cameras).
        k: number of cameras. up_axis: index of the world's up axis (AMASS: 2, z up).

    Returns:
        ``k`` :class:`Camera` with ids ``"v0"`` .. ``"v{k-1}"``.

    Raises:
        ValueError when the motion cannot be framed within 60 m.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    up = np.zeros(3)
    up[up_axis] = 1.0
    horizontal = [a for a in range(3) if a != up_axis]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    target = (lo + hi) / 2
    target[up_axis] = pts[:, up_axis].mean()
    floor = lo[up_axis]
    offset = rng.uniform(0, 2 * np.pi)
    cameras = []
    for i in range(k):
        azimuth = offset + 2 * np.pi * i / k + rng.uniform(-0.25, 0.25) * np.pi / k
        dist, eye_height = rng.uniform(*distance), rng.uniform(*height)
        f = np.full(2, rng.uniform(1140.0, 1150.0))
        c = np.array([512.0, 508.0]) + rng.uniform(-15.0, 15.0, size=2)
        while dist <= 60.0:
            eye = target.copy()
            eye[horizontal[0]] += dist * np.cos(azimuth)
            eye[horizontal[1]] += dist * np.sin(azimuth)
            eye[up_axis] = floor + eye_height
            cam = look_at_camera(eye, target, up, f, c, 1000, 1000, id=f"v{i}")
            local = cam.world_to_camera(pts)
            if local[:, 2].min() > 0.5:
                uv = cam.project(local, distort=False)
                inside = ((uv >= margin * 1000) & (uv <= (1 - margin) * 1000)).all()
                if inside:
                    break
            dist *= 1.1
        else:
            raise ValueError(f"virtual_cameras: the motion spans {hi - lo} m and cannot be framed within 60 m")
        cameras.append(cam)
    return cameras
