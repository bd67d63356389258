"""MPI-INF-3DHP camera calibration: the two text formats the dataset ships, and the test cameras' facts.

* Training set, ``S<n>/Seq<k>/camera.calibration``: "Skeletool Camera Calibration File V1.0". One block
  per camera, ``name <index>`` then ``sensor w h`` (mm), ``size w h`` (px), ``animated 0``,
  ``intrinsic`` (4x4 row-major; fx = K[0,0], cx = K[0,2], fy = K[1,1], cy = K[1,2]), ``extrinsic``
  (4x4 row-major world-to-camera, millimetres: ``X_cam = E[:3,:3] X_world + E[:3,3]``) and ``radial``.
  Sources: the dataset's README (Arka-h/mpi-inf-3dhp ``README.txt``), mmpose
  ``tools/dataset_converters/preprocess_mpi_inf_3dhp.py`` (reads the same fields), the Skeletool writer
  ``camera_container::saveCameras``. ``radial`` is 0 in the published files and ignored by the reference
  converters; the README states that annot3 reprojects onto annot2, i.e. a pinhole camera.
* Test set, ``test_util/camera_calibration/ts1-4cameras.calib`` and ``ts5-6cameras.calib``: "tc camera
  calibration v0.3" (checked on the real files, ``../shared/data/mpi_inf_3dhp``). Per camera: ``sensorSize``
  (mm), ``focalLength`` (mm), ``pixelAspect`` (y / x), ``centerOffset`` (mm, positive moves right and down),
  ``distortion`` (OpenCV k1 k2 p1 p2 k3), ``origin`` (camera centre, world, mm), ``up`` and ``right``
  (camera axes in world coordinates). The image size is not in the file; it is a dataset fact
  (2048 x 2048 for TS1-TS4, 1920 x 1080 for TS5-TS6, P-STMO ``common/load_data_3dhp_mae.py``).
  Conversion, in pixels: ``fx = focalLength / sensorSize_x * width``, ``fy = fx * pixelAspect``,
  ``cx = width / 2 + centerOffset_x / sensorSize_x * width`` (same for y); rotation rows ``right``,
  ``-up`` (image y points down) and their cross product. Cross-checked: the TS1-TS4 camera is the studio's
  camera 8, whose Skeletool calibration (intrinsic fx 1500.172, fy 1500.837, cx 1017.387, cy 1043.032;
  extrinsic first row 0.000575281 0.06160985 -0.9981001 221.3543) this conversion reproduces, and P-STMO /
  PoseAug-style loaders use the same fx, cx, cy (1500.172288, 1017.38733568, 1043.03198208 and 1683.98345952,
  939.85754016, 560.14074317).

The store's camera model (``ingest.camera``) is Human3.6M's, whose tangential terms differ from OpenCV's, so
the test cameras are stored as pinhole cameras (as P-STMO and mmpose treat them) and the OpenCV coefficients
are kept verbatim in the sequence metadata (``distortion_opencv``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.camera import Camera

SKELETOOL_HEADER = "Skeletool Camera Calibration File V1.0"
TC_HEADER = "tc camera calibration v0.3"

# Test-set image size (width, height) per sequence (dataset fact; P-STMO load_data_3dhp_mae.py, mmpose).
TEST_IMAGE_SIZE = {f"TS{i}": (2048, 2048) if i <= 4 else (1920, 1080) for i in range(1, 7)}
# Which calibration file describes which test sequence (file names of the test set's test_util).
TEST_CALIBRATION_FILE = {f"TS{i}": "ts1-4cameras.calib" if i <= 4 else "ts5-6cameras.calib" for i in range(1, 7)}

# The numbers of the two published test calibration files, so the test set converts without them.
TEST_CAMERA_FACTS = {
    "ts1-4cameras.calib": {
        "name": "cam_8",
        "sensorSize": (10.0, 10.0),
        "focalLength": 7.32506,
        "pixelAspect": 1.00044,
        "centerOffset": (-0.0322884, 0.0929296),
        "distortion": (0.0, 0.0, 0.0, 0.0, 0.0),
        "origin": (3427.28, 1387.86, 309.42),
        "up": (-0.208215, 0.976233, 0.06014),
        "right": (0.000575281, 0.0616098, -0.9981),
    },
    "ts5-6cameras.calib": {
        "name": "GOPR0046_intrinsics",
        "sensorSize": (10.0, 5.625),
        "focalLength": 8.770747185,
        "pixelAspect": 0.993236423,
        "centerOffset": (-0.104908645, 0.104899704),
        "distortion": (-0.276859611, 0.131125256, -0.000360494, -0.001149441, -0.049318332),
        "origin": (-2104.3074, 1038.6707, -4596.6367),
        "up": (0.025272345, 0.995038509, 0.096227370),
        "right": (-0.939647257, -0.009210289, 0.342020929),
    },
}


def _lines(path: Path, header: str) -> list[list[str]]:
    """Non-empty lines of a calibration file as tokens (``#`` comments removed), header checked."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text calibration file") from None
    rows = [line.split("#", 1)[0].split() for line in text.splitlines()]
    rows = [r for r in rows if r]
    if not rows or " ".join(rows[0]) != header:
        first = " ".join(rows[0]) if rows else "<empty>"
        raise ValueError(f"{path}: first line is {first!r}, expected {header!r}")
    return rows[1:]


def _floats(path: Path, camera: str, key: str, tokens: list[str], count: int) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: camera {camera}: {key} has non-numeric values {tokens}") from None
    if len(values) != count:
        raise ValueError(f"{path}: camera {camera}: {key} has {len(values)} values, expected {count}")
    return values


def parse_skeletool(path: Path) -> dict[int, Camera]:
    """Read a training ``camera.calibration`` (module docstring).

    Returns:
        camera index (0..13) -> :class:`Camera` (R world-to-camera, T camera centre in metres, f and c in
        pixels, no distortion, image size from ``size``, id ``"cam_<index>"``).

    Raises:
        ValueError naming the file, camera and field when the header, a field or a value is wrong.
    """
    blocks: dict[int, dict[str, list[str]]] = {}
    current = None
    for tokens in _lines(path, SKELETOOL_HEADER):
        key, values = tokens[0], tokens[1:]
        if key == "name":
            if len(values) != 1 or not values[0].isdigit():
                raise ValueError(f"{path}: camera name {' '.join(values)!r} is not a camera index")
            current = blocks.setdefault(int(values[0]), {})
        elif current is None:
            raise ValueError(f"{path}: field {key!r} before the first 'name' line")
        else:
            current[key] = values
    cameras = {}
    for index, fields in blocks.items():
        missing = [k for k in ("size", "intrinsic", "extrinsic") if k not in fields]
        if missing:
            raise ValueError(f"{path}: camera {index} lacks {missing}")
        size = _floats(path, str(index), "size", fields["size"], 2).astype(int)
        K = _floats(path, str(index), "intrinsic", fields["intrinsic"], 16).reshape(4, 4)
        E = _floats(path, str(index), "extrinsic", fields["extrinsic"], 16).reshape(4, 4)
        R = E[:3, :3]
        cameras[index] = Camera(
            R=R,
            T=-R.T @ E[:3, 3] / 1000.0,
            f=np.array([K[0, 0], K[1, 1]]),
            c=np.array([K[0, 2], K[1, 2]]),
            width=int(size[0]),
            height=int(size[1]),
            id=f"cam_{index}",
        )
    if not cameras:
        raise ValueError(f"{path}: no camera blocks")
    return cameras


def tc_camera(fields: dict, width: int, height: int) -> tuple[Camera, np.ndarray]:
    """One "tc camera calibration v0.3" camera (keys as in :data:`TEST_CAMERA_FACTS`) for an image of
    ``width`` x ``height`` pixels.

    Returns:
        (pinhole :class:`Camera` with id ``fields["name"]``, OpenCV distortion (5,) k1 k2 p1 p2 k3).
    """
    sensor = np.asarray(fields["sensorSize"], dtype=np.float64)
    offset = np.asarray(fields["centerOffset"], dtype=np.float64)
    size = np.array([width, height], dtype=np.float64)
    fx = fields["focalLength"] / sensor[0] * width
    right = np.asarray(fields["right"], dtype=np.float64)
    down = -np.asarray(fields["up"], dtype=np.float64)
    R = np.stack([right, down, np.cross(right, down)])
    camera = Camera(
        R=R,
        T=np.asarray(fields["origin"], dtype=np.float64) / 1000.0,
        f=np.array([fx, fx * fields["pixelAspect"]]),
        c=size / 2 + offset / sensor * size,
        width=int(width),
        height=int(height),
        id=str(fields["name"]),
    )
    return camera, np.asarray(fields["distortion"], dtype=np.float64)


def parse_tc(path: Path) -> list[dict]:
    """Read a test-set ``ts*.calib`` into one field dict per camera (keys of :data:`TEST_CAMERA_FACTS`;
    ``colorCorrection`` tables are skipped). Pass a dict to :func:`tc_camera` with the image size.

    Raises:
        ValueError naming the file, camera and field when the header, a field or a value is wrong.
    """
    counts = {
        "sensorSize": 2,
        "focalLength": 1,
        "pixelAspect": 1,
        "centerOffset": 2,
        "distortion": 5,
        "origin": 3,
        "up": 3,
        "right": 3,
    }
    cameras: list[dict] = []
    for tokens in _lines(path, TC_HEADER):
        key, values = tokens[0], tokens[1:]
        if key == "camera":
            if len(values) != 2:
                raise ValueError(f"{path}: camera line {' '.join(tokens)!r} is not 'camera <index> <name>'")
            cameras.append({"name": values[1].rsplit(".", 1)[0]})
        elif key in counts:
            if not cameras:
                raise ValueError(f"{path}: field {key!r} before the first 'camera' line")
            name = cameras[-1]["name"]
            v = _floats(path, name, key, values, counts[key])
            cameras[-1][key] = float(v[0]) if counts[key] == 1 else tuple(v.tolist())
        elif key == "distortionModel" and values != ["OpenCV"]:
            raise ValueError(f"{path}: distortionModel {' '.join(values)!r}, only 'OpenCV' is known")
    for cam in cameras:
        missing = sorted(set(counts) - set(cam))
        if missing:
            raise ValueError(f"{path}: camera {cam['name']} lacks {missing}")
    if not cameras:
        raise ValueError(f"{path}: no 'camera' blocks")
    return cameras


def ts_camera(sequence: str, calib_dir: Path | None = None) -> tuple[Camera, np.ndarray, str]:
    """The camera of test sequence ``sequence`` (``"TS1"``..``"TS6"``).

    Reads ``calib_dir/<ts1-4cameras.calib | ts5-6cameras.calib>`` when that file exists, else uses the
    embedded :data:`TEST_CAMERA_FACTS` (the same numbers).

    Returns:
        (pinhole camera, OpenCV distortion (5,), description of the calibration used).

    Raises:
        KeyError for an unknown sequence name.
    """
    if sequence not in TEST_IMAGE_SIZE:
        raise KeyError(f"unknown MPI-INF-3DHP test sequence {sequence!r} (expected TS1..TS6)")
    name = TEST_CALIBRATION_FILE[sequence]
    path = Path(calib_dir) / name if calib_dir is not None else None
    if path is not None and path.is_file():
        fields, source = parse_tc(path)[0], str(path)
    else:
        fields, source = TEST_CAMERA_FACTS[name], f"published {name} (embedded)"
    camera, distortion = tc_camera(fields, *TEST_IMAGE_SIZE[sequence])
    return camera, distortion, source
