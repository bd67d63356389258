"""Readers for the 2D keypoint files that pose detectors write, for lifting in-the-wild video to 3D.

:func:`read_keypoints` detects the layout and returns a :class:`KeypointFile`: per frame, the people detected in
it, each a :class:`Detection` with (J, 3) keypoints (x, y in pixels of the image, origin top-left; confidence in
[0, 1]) in the file's joint set (a key of :data:`ingest.detector_joints.DETECTOR_JOINT_SETS`).
:func:`tracks` turns the frames into one (T, J, 3) array per person; :func:`ingest.detector_joints.to_h36m17_derived`
maps such arrays to Human3.6M-17.

Layouts (``format``), each checked against the code that writes it and against a file that tool wrote:

- ``openpose``: a folder of per-frame ``*_keypoints.json`` files (``--write_json``): ``{"version", "people":
  [{"person_id": [-1], "pose_keypoints_2d": [x, y, c] * J, ...}]}``, J = 25 (BODY_25) or 18 (COCO-18); the
  older ``"pose_keypoints"`` key is read too (openpose ``doc/02_output.md``). Frames are the files, ordered by the
  frame number before ``_keypoints.json``; OpenPose writes every frame, an empty ``people`` list when nobody is
  seen. An undetected joint is written as 0, 0, 0 and stays so (confidence 0). ``person_id`` other than -1
  (``--tracking``) is the track. A single such file is read as a one-frame file.
- ``coco``: a COCO keypoint results list ``[{"image_id", "category_id", "keypoints": [x, y, v] * 17, "score"}]``
  (cocoapi ``results/person_keypoints_val2014_fakekeypoints100_results.json``), or the annotation layout
  ``{"images": [{"id", "width", "height", "file_name"}], "annotations": [{"image_id", "keypoints", ...}]}``:
  its frames are the ``images`` (sorted by id), the image size the images' when all are equal, crowd
  annotations (``iscrowd``) skipped. A ``track_id`` (PoseTrack) is the track.
- ``alphapose``: AlphaPose's ``alphapose-results.json`` (``alphapose/utils/pPose_nms.py`` ``write_json``): the
  COCO results list with string image ids (the frame's file name, ``"0.jpg"`` for video input), optional ``box``
  and ``idx``. A list is AlphaPose's rather than COCO's when any entry has ``idx`` or ``box`` or a string
  ``image_id``, or when it has 26 keypoints (Halpe-26). ``idx`` is a track only when it is a single number (pose
  tracking); untracked AlphaPose writes the pose-NMS box ids there, a list such as ``[0.0]`` or
  ``[[0.0], [0.0]]``, which is no identity. The ``score`` is AlphaPose's person score (not in [0, 1]).
- ``mmpose``: the inferencer's ``--pred-out-dir`` file (``mmpose/apis/inferencers/base_mmpose_inferencer.py``:
  per video ``[{"frame_id", "instances": [...]}]`` from frame 0, per image the instance list itself), or
  ``demo/topdown_demo_with_mmdet.py --save-predictions`` ``{"meta_info", "instance_info": [{"frame_id",
  "instances"}]}`` (frames from 1; for an image the instances themselves). An instance (mmpose
  ``structures/utils.py`` ``split_instances``) is ``{"keypoints": [[x, y]] * J, "keypoint_scores": [...],
  "bbox": [[x1, y1, x2, y2]] (older) or [x1, y1, x2, y2], "bbox_score"}``, plus ``track_id`` where one was added;
  ``bbox_score`` is the person's score. ``meta_info.dataset_name`` (``coco``, ``halpe26``, ``h36m``) names the
  joint set.
- ``videopose3d``: VideoPose3D's custom 2D file (``data/prepare_data_2d_custom.py``, read by
  ``common/custom_dataset.py``): ``positions_2d = {video: {"custom": [(T, J, 2) float32]}}`` and ``metadata =
  {"layout_name", "num_joints", "keypoints_symmetry", "video_metadata": {video: {"w", "h"}}}`` as 0-d object
  arrays, loaded with :func:`ingest.untrusted.load_npz` (data only). ``video`` selects one; layout ``coco`` is
  ``coco17``, ``h36m`` is ``h36m17``. Confidence 1.0 (the file has none); one person per frame.
- ``array``: a ``.npy``, or an ``.npz`` holding one array or a ``keypoints`` one: (T, J, 2 | 3) pixels (+
  confidence, 1.0 when absent), one person per frame; ``joint_set`` is required.

Frame order: COCO / AlphaPose image ids are sorted numerically when they are integers or names with a number (the
last run of digits, ``"12.jpg"``, ``"frame_00012.png"``), by name otherwise. Integer ids, and names that differ
only in that number, are frames of a video: every number between the smallest and the largest is a frame, an
empty one (nobody detected) where the file has none (AlphaPose and COCO results list only images with people);
the names of the filled frames repeat the pattern (its zero padding included). mmpose frames are sorted and
filled the same way by ``frame_id``. COCO annotation files list their images, which are the frames as they are.

Values: coordinates are read as pixels (OpenPose files written with ``--keypoint_scale`` other than 0 are not,
which the file does not say). Confidences are clipped to [0, 1] (RTMPose writes scores a little above 1, COCO
results may carry the visibility flags 0 / 1 / 2, which read as 0 / 1 / 1). A NaN coordinate marks the joint
undetected (x = y = 0, confidence 0, OpenPose's convention); a NaN confidence is 0; an infinite coordinate,
confidence or score is an error. In arrays, a frame whose joints are all NaN has no person (the rows
:func:`tracks` writes for an absent person).

Errors: a missing path raises FileNotFoundError. Everything wrong with the content (not JSON, an empty file, an
unknown structure, a wrong keypoint count for the joint set, infinite values, an unknown joint set, no frames,
``video`` on another format) raises one :class:`KeypointError` naming the file, the entry and the problem. A frame
with nobody in it is not an error. Nothing is ever unpickled except through :mod:`ingest.untrusted`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.detector_joints import DETECTOR_JOINT_SETS
from ingest.untrusted import load_npz

FORMATS = ("coco", "mmpose", "alphapose", "openpose", "videopose3d", "array")

# The joint set of a person with this many keypoints, per layout, when ``joint_set`` is not given.
_BY_COUNT = {
    "openpose": {25: "body25", 18: "coco18"},
    "coco": {17: "coco17", 26: "halpe26"},
    "alphapose": {17: "coco17", 26: "halpe26"},
    "mmpose": {17: "coco17", 26: "halpe26"},
}
_MMPOSE_DATASETS = {"coco": "coco17", "halpe26": "halpe26", "h36m": "h36m17"}
_VIDEOPOSE3D_LAYOUTS = {"coco": "coco17", "h36m": "h36m17"}


class KeypointError(ValueError):
    """A keypoint file that cannot be read: one line naming the file (and the entry: list index, frame file, key)
    and the problem."""


@dataclass(frozen=True)
class Detection:
    """One person in one frame.

    Attributes:
        keypoints: (J, 3) float64, read-only: x, y pixels (image frame, origin top-left), confidence in [0, 1].
        score: the person's score (the file's; the mean keypoint confidence where it has none).
        track: the file's track / person id (AlphaPose ``idx`` when a number, OpenPose ``person_id`` other than
            -1, mmpose ``track_id``, COCO / PoseTrack ``track_id``), else None.
    """

    keypoints: np.ndarray
    score: float
    track: str | None


@dataclass
class KeypointFile:
    """A detector's keypoint file, read.

    Attributes:
        path: the file (or OpenPose folder) read.
        format: one of :data:`FORMATS`, the layout detected.
        joint_set: a key of :data:`ingest.detector_joints.DETECTOR_JOINT_SETS`.
        frames: one list of :class:`Detection` per frame, in frame order; [] = nobody in that frame.
        frame_names: per frame, its image id, file name or index, as a string.
        image_size: (width, height) in pixels where the file says, else None.
        fps: frames per second where the file says, else None.
    """

    path: Path
    format: str
    joint_set: str
    frames: list[list[Detection]]
    frame_names: list[str]
    image_size: tuple[float, float] | None = None
    fps: float | None = None


def read_keypoints(path, joint_set: str | None = None, video: str | None = None) -> KeypointFile:
    """Read a detector's 2D keypoint file (see the module docstring for the layouts and rules).

    Args:
        path: an OpenPose output folder, or a ``.json``, ``.npz`` or ``.npy`` file.
        joint_set: the joint set of the keypoints (a key of ``DETECTOR_JOINT_SETS``); None: the file's (from its
            metadata or its keypoint count). Required for arrays. When given, the file's count must match it.
        video: the video of a VideoPose3D file holding several; an error for other layouts.

    Returns:
        The :class:`KeypointFile`, with at least one frame.

    Raises:
        FileNotFoundError: no such file or folder. KeypointError: the content cannot be read (names the file and
            the entry).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if joint_set is not None and joint_set not in DETECTOR_JOINT_SETS:
        raise KeypointError(f"{path}: unknown joint set {joint_set!r} (known: {', '.join(DETECTOR_JOINT_SETS)})")
    if path.is_dir():
        kf = _read_openpose_folder(path, joint_set)
    elif path.suffix.lower() == ".json":
        kf = _read_json_file(path, joint_set)
    elif path.suffix.lower() == ".npz":
        kf = _read_npz(path, joint_set, video)
    elif path.suffix.lower() == ".npy":
        kf = _read_array(path, "array", _load_npy(path), joint_set)
    else:
        raise KeypointError(f"{path}: unknown file type {path.suffix!r} (expected a folder, .json, .npz or .npy)")
    if video is not None and kf.format != "videopose3d":
        raise KeypointError(f"{path}: video={video!r} selects a video of a VideoPose3D .npz; this is {kf.format}")
    if not kf.frames:
        raise KeypointError(f"{path}: no frames")
    return kf


def tracks(kf: KeypointFile) -> dict[str, np.ndarray]:
    """One (T, J, 3) array per person, T = ``len(kf.frames)``, J of ``kf.joint_set``.

    When every detection has a track id: ``{track: array}`` in order of first appearance, with NaN rows (all
    three channels) in the frames where that person is absent; a track seen twice in one frame keeps its
    higher-scoring detection (the first on a tie). Otherwise (no ids, or only some): ``{"0": array}`` holding the
    highest-scoring detection of each frame (the first on a tie), NaN rows where the frame is empty.
    """
    shape = (len(kf.frames), len(DETECTOR_JOINT_SETS[kf.joint_set]), 3)
    detections = [d for frame in kf.frames for d in frame]
    if detections and all(d.track is not None for d in detections):
        out: dict[str, np.ndarray] = {}
        best: dict[tuple[str, int], float] = {}
        for t, frame in enumerate(kf.frames):
            for d in frame:
                array = out.setdefault(d.track, np.full(shape, np.nan))
                if (d.track, t) not in best or d.score > best[d.track, t]:
                    array[t] = d.keypoints
                    best[d.track, t] = d.score
        return out
    array = np.full(shape, np.nan)
    for t, frame in enumerate(kf.frames):
        if frame:
            array[t] = max(frame, key=lambda d: d.score).keypoints
    return {"0": array}


# --- common helpers ---------------------------------------------------------------------------------------------


def _error(path: Path, entry: str, problem: str) -> KeypointError:
    return KeypointError(" ".join(f"{path}: {entry}: {problem}".split()))


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(path: Path, entry: str, what: str, values, count: int | None = None) -> np.ndarray:
    """A flat JSON list of numbers as a float64 array (of ``count`` values when given)."""
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise _error(path, entry, f"{what} is not a list of numbers")
    if count is not None and len(values) != count:
        raise _error(path, entry, f"{what} has {len(values)} values, expected {count}")
    return np.array(values, dtype=np.float64)


def _score(path: Path, entry: str, value) -> float | None:
    """A person score: a number, a one-number list, or absent / NaN (None: the mean confidence is used)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None:
        return None
    if not _is_number(value) or math.isinf(value):
        raise _error(path, entry, f"score {value!r} is not a finite number")
    return None if math.isnan(value) else float(value)


def _track(value) -> str | None:
    """A track id from a number or string; None for a list (AlphaPose's NMS box ids), -1, or absence."""
    if isinstance(value, str):
        return value
    if _is_number(value) and math.isfinite(value) and value != -1:
        return str(int(value)) if float(value).is_integer() else str(value)
    return None


def _detection(path: Path, entry: str, xy: np.ndarray, conf: np.ndarray, score, track) -> Detection:
    """Validate and normalise one person: (J, 2) pixels, (J,) confidences (see the module's value rules)."""
    if np.isinf(xy).any() or np.isinf(conf).any():
        raise _error(path, entry, "infinite keypoint coordinate or confidence")
    missing = np.isnan(xy).any(axis=1)
    keypoints = np.empty((len(xy), 3))
    keypoints[:, :2] = np.where(missing[:, None], 0.0, xy)
    keypoints[:, 2] = np.where(missing | np.isnan(conf), 0.0, np.clip(conf, 0.0, 1.0))
    keypoints.flags.writeable = False
    score = _score(path, entry, score)
    if score is None:
        score = float(keypoints[:, 2].mean())
    return Detection(keypoints=keypoints, score=score, track=track)


def _joint_set(path: Path, entry: str, count: int, requested: str | None, layout: str, default: str | None = None):
    """The joint set of persons with ``count`` keypoints: ``requested`` (checked), else ``default`` when its count
    matches, else the layout's usual set for that count."""
    if requested is not None:
        expected = len(DETECTOR_JOINT_SETS[requested])
        if count != expected:
            raise _error(path, entry, f"{count} keypoints per person, joint set {requested!r} has {expected}")
        return requested
    if default is not None and len(DETECTOR_JOINT_SETS[default]) == count:
        return default
    name = _BY_COUNT.get(layout, {}).get(count)
    if name is None:
        raise _error(path, entry, f"{count} keypoints per person: no {layout} joint set has that many; pass joint_set")
    return name


def _unknown_set(path: Path, entry: str):
    raise _error(path, entry, "nobody detected in any frame, so the joint set is unknown: pass joint_set")


def _check_count(path: Path, entry: str, count: int, expected: int) -> None:
    if count != expected:
        raise _error(path, entry, f"{count} keypoints per person where the file's others have {expected}")


_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def _frame_order(ids: list) -> list[tuple[object, str]]:
    """Distinct image / frame ids -> [(id or None for a filled empty frame, frame name)] in frame order (see the
    module docstring)."""
    if all(isinstance(i, int) for i in ids):
        present = set(ids)
        return [(i if i in present else None, str(i)) for i in range(min(ids), max(ids) + 1)]
    names = [str(i) for i in ids]
    by_name = dict(zip(names, ids, strict=True))
    matches = [_NUMBERED.match(n) for n in names]
    if all(matches):
        numbers = [int(m.group(2)) for m in matches]
        patterns = {(m.group(1), m.group(3)) for m in matches}
        widths = {len(m.group(2)) for m in matches}
        if len(patterns) == 1 and len(set(numbers)) == len(numbers):
            (prefix, suffix), present = patterns.pop(), dict(zip(numbers, names, strict=True))
            width = widths.pop() if len(widths) == 1 else 1
            out = []
            for n in range(min(numbers), max(numbers) + 1):
                name = present.get(n, f"{prefix}{n:0{width}d}{suffix}")
                out.append((by_name[name] if n in present else None, name))
            return out
        return [(by_name[n], n) for _, n in sorted(zip(numbers, names, strict=True))]
    return [(by_name[n], n) for n in sorted(names)]


# --- JSON layouts -------------------------------------------------------------------------------------------------


def _load_json(path: Path):
    data = path.read_bytes()
    if not data.strip():
        raise _error(path, "whole file", "empty file")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _error(path, "whole file", f"not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None


def _read_json_file(path: Path, joint_set: str | None) -> KeypointFile:
    obj = _load_json(path)
    if isinstance(obj, list):
        if not obj:
            raise _error(path, "whole file", "an empty list: no frames")
        first = obj[0]
        if isinstance(first, dict) and "instances" in first and "frame_id" in first:
            return _read_mmpose(path, obj, "entry", None, joint_set)
        if isinstance(first, dict) and "keypoint_scores" in first:
            return _read_mmpose(path, [{"frame_id": 0, "instances": obj}], "entry", None, joint_set, path.stem)
        if isinstance(first, dict) and "image_id" in first and "keypoints" in first:
            return _read_coco_list(path, obj, joint_set)
    elif isinstance(obj, dict):
        if "instance_info" in obj:
            return _read_mmpose_demo(path, obj, joint_set)
        if "annotations" in obj:
            return _read_coco_annotations(path, obj, joint_set)
        if "people" in obj:
            return _openpose_file(path, [(path.name, obj)], joint_set)
    raise _error(
        path,
        "whole file",
        "unknown structure: not a COCO / AlphaPose results list, COCO annotations, mmpose predictions or an "
        "OpenPose frame",
    )


def _coco_entry(path: Path, entry: str, item) -> tuple[np.ndarray, int]:
    """The flat [x, y, c] * J keypoints of a COCO-style entry as (J, 3), and J."""
    if not isinstance(item, dict) or "keypoints" not in item or "image_id" not in item:
        raise _error(path, entry, "not an object with image_id and keypoints")
    values = _numbers(path, entry, "keypoints", item["keypoints"])
    if len(values) % 3 or not len(values):
        raise _error(path, entry, f"keypoints has {len(values)} values, not a multiple of 3 (x, y, confidence)")
    return values.reshape(-1, 3), len(values) // 3


def _image_id(path: Path, entry: str, value):
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _error(path, entry, f"image_id {value!r} is neither an integer nor a string")


def _read_coco_list(path: Path, items: list, joint_set: str | None) -> KeypointFile:
    parsed = [_coco_entry(path, f"entry {i}", item) for i, item in enumerate(items)]
    counts = {count for _, count in parsed}
    alphapose = 26 in counts or any(
        "idx" in item or "box" in item or isinstance(item["image_id"], str) for item in items
    )
    layout = "alphapose" if alphapose else "coco"
    name = _joint_set(path, "entry 0", parsed[0][1], joint_set, layout)
    by_image: dict[object, list[Detection]] = {}
    for i, (item, (kp, count)) in enumerate(zip(items, parsed, strict=True)):
        entry = f"entry {i}"
        _check_count(path, entry, count, parsed[0][1])
        image = _image_id(path, entry, item["image_id"])
        track = _track(item.get("idx")) if alphapose else None
        if track is None:
            track = _track(item.get("track_id"))
        detection = _detection(path, entry, kp[:, :2], kp[:, 2], item.get("score"), track)
        by_image.setdefault(image, []).append(detection)
    order = _frame_order(list(by_image))
    return KeypointFile(
        path=path,
        format=layout,
        joint_set=name,
        frames=[by_image[i] if i is not None else [] for i, _ in order],
        frame_names=[n for _, n in order],
    )


def _read_coco_annotations(path: Path, obj: dict, joint_set: str | None) -> KeypointFile:
    annotations, images = obj["annotations"], obj.get("images")
    if not isinstance(annotations, list) or (images is not None and not isinstance(images, list)):
        raise _error(path, "key 'annotations' / 'images'", "not a list")
    sizes, names = set(), {}
    for i, image in enumerate(images or []):
        entry = f"images[{i}]"
        if not isinstance(image, dict) or "id" not in image:
            raise _error(path, entry, "not an object with an id")
        image_id = _image_id(path, entry, image["id"])
        names[image_id] = str(image.get("file_name", image_id))
        if _is_number(image.get("width")) and _is_number(image.get("height")):
            sizes.add((float(image["width"]), float(image["height"])))
    by_image: dict[object, list[Detection]] = {i: [] for i in names}
    name, first = joint_set, None
    for i, item in enumerate(annotations):
        entry = f"annotations[{i}]"
        if isinstance(item, dict) and item.get("iscrowd"):
            continue
        kp, count = _coco_entry(path, entry, item)
        if first is None:
            first, name = count, _joint_set(path, entry, count, joint_set, "coco")
        _check_count(path, entry, count, first)
        image = _image_id(path, entry, item["image_id"])
        if images is not None and image not in names:
            raise _error(path, entry, f"image_id {image!r} is not in 'images'")
        detection = _detection(path, entry, kp[:, :2], kp[:, 2], item.get("score"), _track(item.get("track_id")))
        by_image.setdefault(image, []).append(detection)
    if name is None:
        name = _joint_set(path, "key 'annotations'", 17, None, "coco")
    if images is not None:
        ids = sorted(names, key=lambda i: (isinstance(i, str), i))
        order = [(i, names[i]) for i in ids]
    else:
        order = _frame_order(list(by_image)) if by_image else []
    return KeypointFile(
        path=path,
        format="coco",
        joint_set=name,
        frames=[by_image[i] if i is not None else [] for i, _ in order],
        frame_names=[n for _, n in order],
        image_size=sizes.pop() if len(sizes) == 1 else None,
    )


def _read_mmpose_demo(path: Path, obj: dict, joint_set: str | None) -> KeypointFile:
    info, meta = obj["instance_info"], obj.get("meta_info")
    dataset = meta.get("dataset_name") if isinstance(meta, dict) else None
    default = _MMPOSE_DATASETS.get(dataset) if isinstance(dataset, str) else None
    if not isinstance(info, list):
        raise _error(path, "key 'instance_info'", "not a list")
    if info and isinstance(info[0], dict) and "instances" in info[0]:
        return _read_mmpose(path, info, "instance_info", default, joint_set)
    return _read_mmpose(path, [{"frame_id": 0, "instances": info}], "instance_info", default, joint_set, path.stem)


def _read_mmpose(path: Path, frames: list, where: str, default, joint_set, image: str | None = None) -> KeypointFile:
    """mmpose predictions: ``frames`` a list of {"frame_id", "instances"} found under ``where`` (entries are named
    ``where[i].instances[k]``); ``image``: the file holds one image's instance list, ``where[k]``, named so."""
    by_id: dict[int, list[Detection]] = {}
    name, first = joint_set, None
    for i, frame in enumerate(frames):
        entry = where if image is not None else f"{where}[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("instances"), list):
            raise _error(path, entry, "not an object with a frame_id and an instances list")
        frame_id = frame.get("frame_id")
        if not isinstance(frame_id, int) or isinstance(frame_id, bool):
            raise _error(path, entry, f"frame_id {frame_id!r} is not an integer")
        if frame_id in by_id:
            raise _error(path, entry, f"frame_id {frame_id} appears twice")
        people = by_id[frame_id] = []
        for k, instance in enumerate(frame["instances"]):
            where_k = f"{where}[{k}]" if image is not None else f"{entry}.instances[{k}]"
            if not isinstance(instance, dict) or "keypoints" not in instance or "keypoint_scores" not in instance:
                raise _error(path, where_k, "not an object with keypoints and keypoint_scores")
            rows = instance["keypoints"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _error(path, where_k, "keypoints is not a list of [x, y] pairs")
            if any(len(r) != 2 for r in rows):
                raise _error(path, where_k, "keypoints are not [x, y] pairs (3D predictions are not 2D keypoints)")
            xy = _numbers(path, where_k, "keypoints", [v for r in rows for v in r]).reshape(-1, 2)
            conf = _numbers(path, where_k, "keypoint_scores", instance["keypoint_scores"], len(rows))
            if first is None:
                first, name = len(rows), _joint_set(path, where_k, len(rows), joint_set, "mmpose", default)
            _check_count(path, where_k, len(rows), first)
            track = _track(instance.get("track_id"))
            people.append(_detection(path, where_k, xy, conf, instance.get("bbox_score"), track))
    if name is None:
        name = default or _unknown_set(path, where)
    if image is not None:
        return KeypointFile(path, "mmpose", name, list(by_id.values()), [image])
    order = _frame_order(list(by_id)) if by_id else []
    return KeypointFile(
        path, "mmpose", name, [by_id[i] if i is not None else [] for i, _ in order], [n for _, n in order]
    )


# --- OpenPose -----------------------------------------------------------------------------------------------------

_OPENPOSE_FRAME = re.compile(r"(\d+)_keypoints\.json$")


def _read_openpose_folder(path: Path, joint_set: str | None) -> KeypointFile:
    files = [p for p in path.iterdir() if p.name.endswith("_keypoints.json") and not p.name.startswith(".")]
    if not files:
        raise _error(path, "folder", "no OpenPose *_keypoints.json files: no frames")
    numbered = {}
    for p in files:
        match = _OPENPOSE_FRAME.search(p.name)
        if match is None:
            raise _error(path, f"frame file {p.name}", "no frame number before _keypoints.json")
        number = int(match.group(1))
        if number in numbered:
            raise _error(
                path,
                f"frame file {p.name}",
                f"frame {number} also in {numbered[number].name} (several videos in one folder?)",
            )
        numbered[number] = p
    ordered = [numbered[n] for n in sorted(numbered)]
    return _openpose_file(path, [(p.name, _load_json(p)) for p in ordered], joint_set)


def _openpose_file(path: Path, frames: list[tuple[str, object]], joint_set: str | None) -> KeypointFile:
    """OpenPose frames [(file name, parsed JSON)] -> KeypointFile (``path``: the folder or the single file)."""
    out, name, first = [], joint_set, None
    for file_name, obj in frames:
        if not isinstance(obj, dict) or not isinstance(obj.get("people"), list):
            raise _error(path, f"frame file {file_name}", "not an OpenPose frame (no 'people' list)")
        people = []
        for k, person in enumerate(obj["people"]):
            entry = f"frame file {file_name}, people[{k}]"
            flat = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
            values = _numbers(path, entry, "pose_keypoints_2d", flat)
            if len(values) % 3 or not len(values):
                raise _error(path, entry, f"pose_keypoints_2d has {len(values)} values, not 3 per joint")
            count = len(values) // 3
            if first is None:
                first, name = count, _joint_set(path, entry, count, joint_set, "openpose")
            _check_count(path, entry, count, first)
            person_id = person.get("person_id")
            if isinstance(person_id, list) and len(person_id) == 1:
                person_id = person_id[0]
            kp = values.reshape(-1, 3)
            people.append(_detection(path, entry, kp[:, :2], kp[:, 2], None, _track(person_id)))
        out.append(people)
    if name is None:
        _unknown_set(path, "all frames")
    return KeypointFile(path, "openpose", name, out, [file_name for file_name, _ in frames])


# --- arrays -------------------------------------------------------------------------------------------------------


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles; whatever it raises on a foreign or damaged file becomes a KeypointError."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises many types on damaged bytes; the file is what failed
        raise _error(path, "whole file", f"not a plain .npy array ({type(exc).__name__}: {str(exc)[:200]})") from None


def _read_npz(path: Path, joint_set: str | None, video: str | None) -> KeypointFile:
    try:
        data = load_npz(path)
    except ValueError as exc:
        raise _error(path, "whole file", str(exc).removeprefix(f"{path}: ")) from None
    if "positions_2d" in data:
        return _read_videopose3d(path, data, joint_set, video)
    if "keypoints" in data:
        return _read_array(path, "key 'keypoints'", data["keypoints"], joint_set)
    if len(data) == 1:
        key = next(iter(data))
        return _read_array(path, f"key {key!r}", data[key], joint_set)
    raise _error(path, "whole file", f"keys {sorted(data)}: neither positions_2d, keypoints nor a single array")


def _read_array(path: Path, entry: str, array, joint_set: str | None, layout: str = "array") -> KeypointFile:
    """A (T, J, 2 | 3) array, one person per frame (all-NaN frames: nobody)."""
    if joint_set is None:
        raise _error(path, entry, "a plain keypoint array needs joint_set (e.g. 'coco17', 'h36m17')")
    array = np.asarray(array)
    if array.dtype.kind not in "fiu" or array.ndim != 3 or array.shape[-1] not in (2, 3):
        raise _error(path, entry, f"not a numeric (T, J, 2 | 3) array: dtype {array.dtype}, shape {array.shape}")
    _joint_set(path, entry, array.shape[1], joint_set, layout)
    array = array.astype(np.float64)
    conf = array[..., 2] if array.shape[-1] == 3 else np.ones(array.shape[:2])
    frames = []
    for t in range(len(array)):
        if np.isnan(array[t, :, :2]).all():
            frames.append([])
        else:
            frames.append([_detection(path, f"{entry} frame {t}", array[t, :, :2], conf[t], None, None)])
    return KeypointFile(path, layout, joint_set, frames, [str(t) for t in range(len(array))])


def _read_videopose3d(path: Path, data: dict, joint_set: str | None, video: str | None) -> KeypointFile:
    positions, metadata = data["positions_2d"], data.get("metadata")
    positions = positions.item() if isinstance(positions, np.ndarray) and positions.dtype == object else positions
    metadata = metadata.item() if isinstance(metadata, np.ndarray) and metadata.dtype == object else metadata
    if not isinstance(positions, dict) or not positions:
        raise _error(path, "key 'positions_2d'", "not a non-empty {video: {'custom': [array]}} dict")
    videos = sorted(positions, key=str)
    if video is None and len(videos) > 1:
        raise _error(path, "key 'positions_2d'", f"{len(videos)} videos, choose one with video=: {videos}")
    video = videos[0] if video is None else video
    if video not in positions:
        raise _error(path, "key 'positions_2d'", f"no video {video!r}; the file has {videos}")
    entry = f"key 'positions_2d'[{video!r}]['custom']"
    custom = positions[video].get("custom") if isinstance(positions[video], dict) else None
    if not isinstance(custom, list) or len(custom) != 1:
        raise _error(path, entry, "not a list of one (T, J, 2) array")
    metadata = metadata if isinstance(metadata, dict) else {}
    layout = metadata.get("layout_name")
    default = _VIDEOPOSE3D_LAYOUTS.get(layout) if isinstance(layout, str) else None
    if joint_set is None and default is None:
        raise _error(path, "key 'metadata'", f"keypoint layout {layout!r} is not coco or h36m: pass joint_set")
    kf = _read_array(path, entry + "[0]", custom[0], joint_set or default, "videopose3d")
    resolution = metadata.get("video_metadata")
    resolution = resolution.get(video) if isinstance(resolution, dict) else None
    if isinstance(resolution, dict):
        if _is_number(resolution.get("w")) and _is_number(resolution.get("h")):
            kf.image_size = (float(resolution["w"]), float(resolution["h"]))
        if _is_number(resolution.get("fps")):
            kf.fps = float(resolution["fps"])
    return kf
