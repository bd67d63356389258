"""Writers of 2D pose detectors' keypoint files, for the in-the-wild lifting demo and the tests of
:mod:`ingest.keypoints`: from Human3.6M-17 pixel keypoints (real Human3.6M projections, or any motion in that
order), each writes one tool's exact layout (the references of each layout are in :mod:`ingest.keypoints`).

Input everywhere: ``kp`` (T, 17, 3) float, x, y in pixels (image frame, origin top-left) and confidence, in
:data:`ingest.skeleton.H36M17` order. A frame whose joints are all NaN is written as a frame with nobody in it
(where the layout can say so; VideoPose3D and plain arrays keep the NaN rows); a single NaN joint is written
undetected (0, 0, 0, OpenPose's convention).

Human3.6M has no eye, ear or foot markers, so the detector joints get stand-ins (:data:`STAND_INS`):

- nose = neck_nose; left/right eye and ear = head, so mmpose's mid-eyes head rule gives back the head;
- Halpe-26 head = head, neck = thorax, hip = pelvis; BODY_25 / COCO-18 neck = thorax, BODY_25 mid_hip = pelvis;
- big / small toes and heels (Halpe-26, BODY_25) = the ankle of their side, with confidence 0.

Every file is written atomically (:mod:`ingest.atomic`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ingest.atomic import atomic_path, write_text
from ingest.detector_joints import DETECTOR_JOINT_SETS
from ingest.skeleton import H36M17

# Detector joint -> the Human3.6M-17 joint written there, for joints whose names differ or that Human3.6M lacks.
STAND_INS = {
    "nose": "neck_nose",
    "left_eye": "head",
    "right_eye": "head",
    "left_ear": "head",
    "right_ear": "head",
    "neck": "thorax",
    "hip": "pelvis",
    "mid_hip": "pelvis",
    "left_big_toe": "left_ankle",
    "left_small_toe": "left_ankle",
    "left_heel": "left_ankle",
    "right_big_toe": "right_ankle",
    "right_small_toe": "right_ankle",
    "right_heel": "right_ankle",
}
UNSEEN = {"left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"}

_EMPTY_OPENPOSE_PARTS = (
    "face_keypoints_2d",
    "hand_left_keypoints_2d",
    "hand_right_keypoints_2d",
    "pose_keypoints_3d",
    "face_keypoints_3d",
    "hand_left_keypoints_3d",
    "hand_right_keypoints_3d",
)


def from_h36m17(kp: np.ndarray, joint_set: str) -> np.ndarray:
    """(T, 17, 3) Human3.6M-17 keypoints -> (T, J, 3) in ``joint_set`` order, with the :data:`STAND_INS` (the
    foot joints of :data:`UNSEEN` at confidence 0). Raises ValueError for another input shape."""
    kp = np.asarray(kp, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (len(H36M17), 3):
        raise ValueError(f"expected Human3.6M-17 keypoints of shape (T, 17, 3), got {kp.shape}")
    names = DETECTOR_JOINT_SETS[joint_set].joints
    out = kp[:, [H36M17.index(STAND_INS.get(j, j)) for j in names]].copy()
    out[:, [names.index(j) for j in names if j in UNSEEN], 2] = 0.0
    return out


def _people(kp: np.ndarray) -> list[np.ndarray | None]:
    """Per frame, None when all joints are NaN (nobody), else (J, 3) with NaN joints set to 0, 0, 0."""
    out = []
    for frame in kp:
        missing = np.isnan(frame).any(axis=1)
        out.append(None if missing.all() else np.where(missing[:, None], 0.0, frame))
    return out


def _flat(person: np.ndarray) -> list[float]:
    return [float(v) for v in person.reshape(-1)]


def _box(person: np.ndarray) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 around the joints seen (confidence > 0), or all joints when none is."""
    seen = person[person[:, 2] > 0] if (person[:, 2] > 0).any() else person
    return (float(seen[:, 0].min()), float(seen[:, 1].min()), float(seen[:, 0].max()), float(seen[:, 1].max()))


def write_coco(path, kp: np.ndarray, image_size: tuple[float, float], results: bool = False) -> None:
    """COCO-17 keypoints as a COCO annotation file (``{"images", "annotations", "categories"}``: image ``t`` of
    ``image_size`` (width, height) pixels, named ``{t:06d}.jpg``; keypoint flags v = 2 where the confidence is
    above 0, else 0, with x = y = 0 as COCO writes unlabelled joints) or, ``results=True``, as a COCO results
    list (``[{"image_id": t, "category_id": 1, "keypoints": [x, y, c] * 17, "score"}]``, the score the mean
    confidence)."""
    coco = from_h36m17(kp, "coco17")
    people = _people(coco)
    if results:
        entries = [
            {"image_id": t, "category_id": 1, "keypoints": _flat(p), "score": float(p[:, 2].mean())}
            for t, p in enumerate(people)
            if p is not None
        ]
        write_text(path, json.dumps(entries))
        return
    width, height = image_size
    images = [{"id": t, "file_name": f"{t:06d}.jpg", "width": width, "height": height} for t in range(len(kp))]
    annotations = []
    for t, p in enumerate(people):
        if p is None:
            continue
        seen = p[:, 2] > 0
        flags = np.where(seen[:, None], np.column_stack([p[:, :2], np.full(len(p), 2.0)]), 0.0)
        x1, y1, x2, y2 = _box(p)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": t,
                "category_id": 1,
                "keypoints": _flat(flags),
                "num_keypoints": int(seen.sum()),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        )
    categories = [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(DETECTOR_JOINT_SETS["coco17"].joints),
            "skeleton": [[p + 1, j + 1] for p, j in DETECTOR_JOINT_SETS["coco17"].bones],
        }
    ]
    write_text(path, json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def write_alphapose(path, kp: np.ndarray, halpe: bool = True, track: int | None = None) -> None:
    """``alphapose-results.json``: Halpe-26 (``halpe=True``) or COCO-17 keypoints, image ids ``"{t}.jpg"`` (as
    AlphaPose names video frames), ``box`` [x, y, w, h], ``score`` AlphaPose's proposal score for a box score of
    1 (mean + 1 + 1.25 max of the keypoint confidences), ``idx`` the untracked form ``[0.0]`` or, with ``track``,
    that number (pose tracking). Frames with nobody are left out, as AlphaPose does."""
    points = from_h36m17(kp, "halpe26" if halpe else "coco17")
    entries = []
    for t, p in enumerate(_people(points)):
        if p is None:
            continue
        x1, y1, x2, y2 = _box(p)
        entries.append(
            {
                "image_id": f"{t}.jpg",
                "category_id": 1,
                "keypoints": _flat(p),
                "score": float(p[:, 2].mean() + 1.0 + 1.25 * p[:, 2].max()),
                "box": [x1, y1, x2 - x1, y2 - y1],
                "idx": [0.0] if track is None else track,
            }
        )
    write_text(path, json.dumps(entries))


def write_openpose(folder, kp: np.ndarray, body25: bool = True, video: str = "h36m", track: int | None = None) -> None:
    """OpenPose ``--write_json`` output: one ``{video}_{t:012d}_keypoints.json`` per frame in ``folder``,
    ``{"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c] * J, ...}]}`` (BODY_25 or,
    ``body25=False``, COCO-18), the face / hand / 3D arrays empty, ``person_id`` ``[track]`` when given; a frame
    with nobody has ``"people": []``."""
    folder = Path(folder)
    points = from_h36m17(kp, "body25" if body25 else "coco18")
    for t, p in enumerate(_people(points)):
        people = []
        if p is not None:
            person = {"person_id": [-1 if track is None else track], "pose_keypoints_2d": _flat(p)}
            people.append(person | {part: [] for part in _EMPTY_OPENPOSE_PARTS})
        frame = {"version": 1.3, "people": people}
        write_text(folder / f"{video}_{t:012d}_keypoints.json", json.dumps(frame, separators=(",", ":")))


def write_mmpose(path, kp: np.ndarray, demo: bool = False, track: int | None = None) -> None:
    """mmpose predictions of a COCO-17 model for a video: the inferencer's ``--pred-out-dir`` file
    (``[{"frame_id": t, "instances": [...]}]`` from frame 0) or, ``demo=True``, ``topdown_demo_with_mmdet.py
    --save-predictions`` (``{"meta_info": {"dataset_name": "coco", ...}, "instance_info": [...]}``, frames from
    1). An instance is ``{"keypoints": [[x, y]] * 17, "keypoint_scores", "bbox": [[x1, y1, x2, y2]],
    "bbox_score": 1.0}`` (plus ``track_id`` when ``track`` is given); a frame with nobody has no instances."""
    frames = []
    for t, p in enumerate(_people(from_h36m17(kp, "coco17"))):
        instances = []
        if p is not None:
            instance = {
                "keypoints": p[:, :2].tolist(),
                "keypoint_scores": p[:, 2].tolist(),
                "bbox": [list(_box(p))],
                "bbox_score": 1.0,
            }
            instances.append(instance if track is None else instance | {"track_id": track})
        frames.append({"frame_id": t + 1 if demo else t, "instances": instances})
    if demo:
        coco = DETECTOR_JOINT_SETS["coco17"]
        meta = {
            "dataset_name": "coco",
            "num_keypoints": len(coco),
            "keypoint_id2name": {str(i): j for i, j in enumerate(coco.joints)},
            "keypoint_name2id": {j: i for i, j in enumerate(coco.joints)},
        }
        write_text(path, json.dumps({"meta_info": meta, "instance_info": frames}, indent="\t"))
    else:
        write_text(path, json.dumps(frames, indent=2))


def write_videopose3d(path, kp: np.ndarray, image_size: tuple[float, float], video: str = "h36m") -> None:
    """VideoPose3D's custom 2D file (``data/prepare_data_2d_custom.py``): ``positions_2d = {video: {"custom":
    [(T, 17, 2) float32 COCO-17 pixels]}}``, ``metadata`` = its ``coco`` metadata plus ``video_metadata =
    {video: {"w", "h"}}`` from ``image_size`` (width, height). Confidences are dropped (the layout has none)."""
    coco = from_h36m17(kp, "coco17")
    symmetry = [list(DETECTOR_JOINT_SETS["coco17"].left), list(DETECTOR_JOINT_SETS["coco17"].right)]
    metadata = {
        "layout_name": "coco",
        "num_joints": 17,
        "keypoints_symmetry": symmetry,
        "video_metadata": {video: {"w": image_size[0], "h": image_size[1]}},
    }
    positions = {video: {"custom": [coco[..., :2].astype("float32")]}}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, positions_2d=positions, metadata=metadata)


def write_array(path, kp: np.ndarray) -> None:
    """The (T, 17, 3) keypoints as they are (Human3.6M-17 order, read with ``joint_set="h36m17"``): ``.npy``, or
    an ``.npz`` with the key ``keypoints``."""
    kp = from_h36m17(kp, "h36m17")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if Path(path).suffix == ".npz":
            np.savez(fh, keypoints=kp)
        else:
            np.save(fh, kp)
