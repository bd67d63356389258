"""The joint sets that 2D pose detectors write, and their map to Human3.6M-17 (in-the-wild lifting).

Joint orders (each checked against its official source):

- ``coco17``: the COCO keypoint order (``person_keypoints`` category; AlphaPose ``doc/output.md`` "Result for
  COCO (17 body parts)"; mmpose ``configs/_base_/datasets/coco.py``).
- ``halpe26``: AlphaPose's Halpe-26, COCO-17 then head, neck, hip, left/right big toe, left/right small toe,
  left/right heel (Fang-Haoshu/Halpe-FullBody ``README.md`` "26 body keypoints"; the same list is in MotionBERT
  ``lib/data/dataset_wild.py``).
- ``body25``: OpenPose BODY_25 (openpose ``src/openpose/pose/poseParameters.cpp`` ``POSE_BODY_25_BODY_PARTS``,
  also in ``doc/02_output.md``).
- ``coco18``: OpenPose's COCO-18 (``poseParameters.cpp`` ``POSE_COCO_BODY_PARTS``; AlphaPose ``doc/output.md``
  "Result for COCO (18 body parts)" for its ``--format open``).
- ``h36m17``: :data:`ingest.skeleton.H36M17` itself, so that an array already in Human3.6M order can be lifted.

Parents: a kinematic tree over each set's own skeleton links (COCO: mmpose ``coco.py`` ``skeleton_info``, nose at
the root; BODY_25 / COCO-18: openpose ``POSE_BODY_PART_PAIRS``, rooted at MidHip / Neck; Halpe-26: rooted at its
hip). They serve drawing and bone checks only: :func:`to_h36m17_derived` never reads them. Left/right pairs pair
every ``left_*`` joint with its ``right_*`` namesake.
"""

from __future__ import annotations

import numpy as np

from ingest.skeleton import H36M17, JointSet


def _joint_set(name: str, joints: tuple[str, ...], parents: tuple[int, ...]) -> JointSet:
    """A :class:`JointSet` whose left/right pairs are the ``left_*`` / ``right_*`` namesakes."""
    left = [i for i, j in enumerate(joints) if j.startswith("left_")]
    right = [joints.index("right_" + joints[i][len("left_") :]) for i in left]
    return JointSet(name=name, joints=joints, parents=parents, left=tuple(left), right=tuple(right))


# fmt: off
_COCO = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO17 = _joint_set("coco17", _COCO, (-1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14))

HALPE26 = _joint_set(
    "halpe26",
    _COCO + (
        "head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe",
        "left_heel", "right_heel",
    ),
    (18, 0, 0, 1, 2, 18, 18, 5, 6, 7, 8, 19, 19, 11, 12, 13, 14, 18, 19, -1, 15, 16, 15, 16, 15, 16),
)

BODY25 = _joint_set(
    "body25",
    (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
        "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    ),
    (1, 8, 1, 2, 3, 1, 5, 6, -1, 8, 9, 10, 8, 12, 13, 0, 0, 15, 16, 14, 19, 14, 11, 22, 11),
)

COCO18 = _joint_set(
    "coco18",
    (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
    ),
    (1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 0, 0, 14, 15),
)
# fmt: on

DETECTOR_JOINT_SETS: dict[str, JointSet] = {s.name: s for s in (COCO17, HALPE26, BODY25, COCO18, H36M17)}

# The Human3.6M-17 joints every set has under the same name (limbs), copied as they are.
_LIMBS = (
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
)  # fmt: skip

# Each Human3.6M-17 joint other than the limbs and the spine: the source joints whose midpoint it is (one
# source: copied). The spine is always the midpoint of the resulting pelvis and thorax (see to_h36m17_derived).
_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    # mmpose demo/body3d_pose_lifter_demo.py convert_keypoint_definition, COCO-style datasets.
    "coco17": {
        "pelvis": ("left_hip", "right_hip"),
        "thorax": ("left_shoulder", "right_shoulder"),
        "neck_nose": ("nose",),
        "head": ("left_eye", "right_eye"),
    },
    # MotionBERT lib/data/dataset_wild.py halpe2h36m.
    "halpe26": {"pelvis": ("hip",), "thorax": ("neck",), "neck_nose": ("nose",), "head": ("head",)},
    # OpenPose's own MidHip / Neck where the set has them, the COCO rules otherwise.
    "body25": {"pelvis": ("mid_hip",), "thorax": ("neck",), "neck_nose": ("nose",), "head": ("left_eye", "right_eye")},
    "coco18": {
        "pelvis": ("left_hip", "right_hip"),
        "thorax": ("neck",),
        "neck_nose": ("nose",),
        "head": ("left_eye", "right_eye"),
    },
}


def _source_indices(joint_set: str) -> list[tuple[int, ...]]:
    """Per Human3.6M-17 joint (spine excepted: empty), the indices of its source joints in ``joint_set``."""
    names = DETECTOR_JOINT_SETS[joint_set]
    rules = {j: (j,) for j in _LIMBS} | _RULES[joint_set]
    return [tuple(names.index(s) for s in rules[j]) if j != "spine" else () for j in H36M17.joints]


_SOURCES = {name: _source_indices(name) for name in _RULES}

# COCO-17 has no neck: mmpose's thorax, the shoulder midpoint, lies below Human3.6M's thorax marker (in S1's 3D,
# 64 mm from it, 61 mm of that straight down the trunk). THORAX_RAISE moves it up the trunk:
# thorax = mid_shoulders + THORAX_RAISE * (mid_shoulders - pelvis), the least-squares fit on training subject S1's
# projected ground truth (every 10th frame of every take and camera, 24,904 frames). On S11 "Walking 1" (camera
# 54138969, 10 s) it brought the COCO-17 error of a 42 mm lifter from 42.7 to 34.6 mm (28.5 from the full
# Human3.6M joints), and of the S1-only semi-small lifter of `make ablation` from 56.6 to 55.4 mm (54.7)
# (README, "Lifting in the wild").
THORAX_RAISE = 0.138
COCO_THORAX = ("h36m", "mmpose")  # to_h36m17_derived's coco_thorax choices
_PELVIS, _SPINE, _THORAX = (H36M17.index(j) for j in ("pelvis", "spine", "thorax"))


def to_h36m17_derived(keypoints: np.ndarray, joint_set: str, coco_thorax: str = "h36m") -> np.ndarray:
    """Detector keypoints in ``joint_set`` order -> Human3.6M-17 (:data:`ingest.skeleton.H36M17` order).

    Joints with a counterpart are copied (x, y and confidence). A derived joint is the midpoint of its sources
    and its confidence the MINIMUM of theirs, so a derived joint is no more certain than its least certain
    source (a source OpenPose left undetected, written as 0, 0, 0, gives a meaningless midpoint with
    confidence 0). Rules, per set (limbs, i.e. hips, knees, ankles, shoulders, elbows, wrists, are copied in
    every set):

    - ``coco17``, after mmpose ``demo/body3d_pose_lifter_demo.py`` ``convert_keypoint_definition`` (COCO-style
      datasets): pelvis = mid(left_hip, right_hip); thorax = mid(left_shoulder, right_shoulder); spine =
      mid(pelvis, thorax); neck_nose = nose; head = mid(left_eye, right_eye). With ``coco_thorax="h36m"`` (the
      default) the thorax is then raised towards Human3.6M's by :data:`THORAX_RAISE`, before the spine is taken.
    - ``halpe26``, after MotionBERT ``lib/data/dataset_wild.py`` ``halpe2h36m``: pelvis = hip; thorax = neck;
      spine = mid(neck, hip); neck_nose = nose; head = head. (MotionBERT averages the confidence channel of the
      spine too; here it is the minimum, as for every derived joint.)
    - ``body25``: pelvis = MidHip; thorax = Neck; spine = mid(Neck, MidHip); neck_nose = nose; head =
      mid(left_eye, right_eye). OpenPose detects its Neck and MidHip itself, as AlphaPose detects Halpe's neck
      and hip, so they are used directly as MotionBERT uses Halpe's; OpenPose has no head-top, so the head is
      mmpose's COCO rule.
    - ``coco18``: pelvis = mid(left_hip, right_hip) (no MidHip in this set: COCO rule); thorax = Neck; spine =
      mid(pelvis, Neck); neck_nose = nose; head = mid(left_eye, right_eye).
    - ``h36m17``: identity (a copy).

    The spine is always mid(pelvis, thorax) of the joints above, its confidence the minimum over all their
    sources. NaN inputs propagate: a frame of NaN rows (an absent person, :func:`ingest.keypoints.tracks`) stays
    NaN.

    Args:
        keypoints: (..., J, 3) x, y (pixels, or any unit: the rules are affine) and confidence.
        joint_set: a key of :data:`DETECTOR_JOINT_SETS`.
        coco_thorax: for ``coco17``: ``"h36m"`` (mmpose's thorax raised by :data:`THORAX_RAISE`) or ``"mmpose"``
            (mmpose's rule as released).

    Returns:
        (..., 17, 3) float64 array, a new one.

    Raises:
        ValueError: unknown joint set, or ``keypoints`` not of shape (..., J, 3) for that set; the message names
            the set and the shape.
    """
    keypoints = np.asarray(keypoints)
    if joint_set not in DETECTOR_JOINT_SETS:
        raise ValueError(
            f"unknown joint set {joint_set!r} for keypoints of shape {keypoints.shape}; "
            f"known: {', '.join(DETECTOR_JOINT_SETS)}"
        )
    count = len(DETECTOR_JOINT_SETS[joint_set])
    if keypoints.ndim < 2 or keypoints.shape[-2:] != (count, 3):
        raise ValueError(
            f"joint set {joint_set!r} expects keypoints of shape (..., {count}, 3), got shape {keypoints.shape}"
        )
    if coco_thorax not in COCO_THORAX:
        raise ValueError(f"coco_thorax must be one of {COCO_THORAX}, got {coco_thorax!r}")
    keypoints = keypoints.astype(np.float64)
    if joint_set == "h36m17":
        return keypoints.copy()
    out = np.empty(keypoints.shape[:-2] + (len(H36M17), 3))
    for j, sources in enumerate(_SOURCES[joint_set]):
        if sources:
            src = keypoints[..., list(sources), :]
            out[..., j, :2] = src[..., :2].mean(axis=-2)
            out[..., j, 2] = src[..., 2].min(axis=-1)
    if joint_set == "coco17" and coco_thorax == "h36m":
        out[..., _THORAX, :2] += THORAX_RAISE * (out[..., _THORAX, :2] - out[..., _PELVIS, :2])
    out[..., _SPINE, :2] = (out[..., _PELVIS, :2] + out[..., _THORAX, :2]) / 2
    out[..., _SPINE, 2] = np.minimum(out[..., _PELVIS, 2], out[..., _THORAX, 2])
    return out
