"""Detector keypoint files: the joint sets and their Human3.6M-17 rules (ingest.detector_joints), the readers
(ingest.keypoints) on files in each tool's layout written by experiments.detector_files, tracks, and the errors.

Each writer's layout was checked against a file the tool itself wrote, in a public repository (keys, nesting,
types; those files are not copied here):

- OpenPose BODY_25: ttyaaron/cs229_soccer ``output/video_000000000000_keypoints.json`` (and lczm/cosign
  ``COCO_val2014_000000000192_keypoints.json``): ``{"version": 1.3, "people": [{"person_id": [-1],
  "pose_keypoints_2d": 75 numbers, face / hand / 3d arrays}]}``, undetected joints ``0,0,0``.
- AlphaPose: hankong0222/MotionBERT ``alphapose-results.json`` (Halpe-26) and akarshkumar0101/nba-3d-ee-371q
  ``alphapose-results.json`` (COCO-17): entries ``{"image_id": "0.jpg", "category_id": 1, "keypoints", "score":
  3.08, "box": [x, y, w, h], "idx": [0.0] or [[0.0], [0.0]]}``, frames without people absent.
- mmpose inferencer (video): esas4/mdc ``predictions/video.json``: ``[{"frame_id": 0, "instances": [{"keypoints":
  [[x, y]...], "keypoint_scores" (some above 1), "bbox": [[x1, y1, x2, y2]], "bbox_score"}]}]``; per image:
  PavYtr/LumbarCV ``output/predictions/demo.json`` (the instance list itself).
- mmpose ``--save-predictions``: 546-final/mmpose ``vis_results/results_demo.json``: ``{"meta_info":
  {"dataset_name", "num_keypoints", ...json_tricks arrays}, "instance_info": [{"frame_id": 1, "instances"}]}``.
- COCO results: cocodataset/cocoapi ``results/person_keypoints_val2014_fakekeypoints100_results.json``:
  ``[{"image_id": 136, "category_id": 1, "keypoints": 51 numbers, "score": 0.897}]``.
- VideoPose3D custom: phan-kimngan/pose3d_exam ``data/data_2d_custom_myvideos.npz``: ``positions_2d =
  {"test.mp4": {"custom": [float32 (512, 17, 2)]}}``, ``metadata = {"layout_name": "coco", "num_joints": 17,
  "keypoints_symmetry", "video_metadata": {"test.mp4": {"w": 1920, "h": 1080}}}`` (read with
  ingest.untrusted.load_npz).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from experiments import detector_files as df
from ingest.detector_joints import DETECTOR_JOINT_SETS, THORAX_RAISE, to_h36m17_derived
from ingest.keypoints import Detection, KeypointError, KeypointFile, read_keypoints, tracks
from ingest.skeleton import H36M17

SIZE = (1000.0, 1002.0)
J = {name: i for i, name in enumerate(H36M17.joints)}
LIMBS = [
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
]  # fmt: skip


def h36m_pixels(frames: int = 12, seed: int = 0) -> np.ndarray:
    """(T, 17, 3) Human3.6M-17 pixels + confidence: a smooth synthetic skeleton (distinct joints), confidences
    in [0.3, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]
    base = rng.uniform(100, 900, size=(1, 17, 2))
    xy = base + 20 * np.stack([np.sin(0.3 * t + np.arange(17)), np.cos(0.2 * t + np.arange(17))], axis=-1)
    conf = rng.uniform(0.3, 1.0, size=(frames, 17, 1))
    return np.concatenate([xy, conf], axis=-1)


def mid(kp: np.ndarray, a: str, b: str) -> np.ndarray:
    return (kp[..., J[a], :2] + kp[..., J[b], :2]) / 2


# --- joint sets ---------------------------------------------------------------------------------------------------

# Orders typed from the official sources: COCO person_keypoints (AlphaPose doc/output.md), Halpe-FullBody
# README.md "26 body keypoints", openpose src/openpose/pose/poseParameters.cpp POSE_BODY_25_BODY_PARTS and
# POSE_COCO_BODY_PARTS.
OFFICIAL = {
    "coco17": "Nose LEye REye LEar REar LShoulder RShoulder LElbow RElbow LWrist RWrist LHip RHip LKnee RKnee "
    "LAnkle RAnkle",
    "halpe26": "Nose LEye REye LEar REar LShoulder RShoulder LElbow RElbow LWrist RWrist LHip RHip LKnee RKnee "
    "LAnkle RAnkle Head Neck Hip LBigToe RBigToe LSmallToe RSmallToe LHeel RHeel",
    "body25": "Nose Neck RShoulder RElbow RWrist LShoulder LElbow LWrist MidHip RHip RKnee RAnkle LHip LKnee LAnkle "
    "REye LEye REar LEar LBigToe LSmallToe LHeel RBigToe RSmallToe RHeel",
    "coco18": "Nose Neck RShoulder RElbow RWrist LShoulder LElbow LWrist RHip RKnee RAnkle LHip LKnee LAnkle REye "
    "LEye REar LEar",
}


def official_name(name: str) -> str:
    """'LBigToe' -> 'left_big_toe', 'MidHip' -> 'mid_hip'."""
    side = {"L": "left_", "R": "right_"}.get(name[0]) if name[1].isupper() else None
    body = name[1:] if side else name
    words = "".join("_" + c.lower() if c.isupper() else c for c in body).lstrip("_")
    return (side or "") + words


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_joint_orders_follow_the_official_sources(name):
    assert DETECTOR_JOINT_SETS[name].joints == tuple(official_name(n) for n in OFFICIAL[name].split())


@pytest.mark.parametrize("name", sorted(DETECTOR_JOINT_SETS))
def test_joint_sets_are_trees_with_mirrored_pairs(name):
    js = DETECTOR_JOINT_SETS[name]
    assert len(js.parents) == len(js) and js.parents.count(-1) == 1
    for j in range(len(js)):  # every joint reaches the root
        seen, k = set(), j
        while k != -1:
            assert k not in seen
            seen.add(k)
            k = js.parents[k]
    for left, right in zip(js.left, js.right, strict=True):
        assert js.joints[left].replace("left_", "right_") == js.joints[right]
    assert len(js.left) == sum(j.startswith("left_") for j in js.joints)


def by_hand(x: np.ndarray, name: str) -> np.ndarray:
    """The documented rules, written out with the sources' own indices (mmpose convert_keypoint_definition,
    MotionBERT halpe2h36m, and the BODY_25 / COCO-18 rules of ingest.detector_joints)."""
    y = np.zeros(x.shape[:-2] + (17, 3))

    def put(j, *src):
        y[..., j, :2] = x[..., list(src), :2].mean(axis=-2)
        y[..., j, 2] = x[..., list(src), 2].min(axis=-1)

    if name in ("coco17", "halpe26"):
        for j, s in zip(
            [1, 2, 3, 4, 5, 6, 9, 11, 12, 13, 14, 15, 16], [12, 14, 16, 11, 13, 15, 0, 5, 7, 9, 6, 8, 10], strict=True
        ):
            put(j, s)
        if name == "coco17":
            put(0, 11, 12)
            put(8, 5, 6)
            put(10, 1, 2)
            put(7, 5, 6, 11, 12)  # mid(mid hips, mid shoulders): the mean of the four
        else:
            put(0, 19)
            put(8, 18)
            put(10, 17)
            put(7, 18, 19)
    else:  # OpenPose: R/L shoulder elbow wrist at 2-4 / 5-7
        hips = [9, 10, 11, 12, 13, 14] if name == "body25" else [8, 9, 10, 11, 12, 13]
        for j, s in zip([1, 2, 3, 4, 5, 6, 9, 11, 12, 13, 14, 15, 16], [*hips, 0, 5, 6, 7, 2, 3, 4], strict=True):
            put(j, s)
        eyes = (15, 16) if name == "body25" else (14, 15)
        put(8, 1)
        put(10, *eyes)
        if name == "body25":
            put(0, 8)
            put(7, 1, 8)
        else:
            put(0, 8, 11)
            y[..., 7, :2] = (y[..., 0, :2] + x[..., 1, :2]) / 2
            y[..., 7, 2] = np.minimum(y[..., 0, 2], x[..., 1, 2])
    return y


@pytest.mark.parametrize("name", ["coco17", "halpe26", "body25", "coco18"])
def test_derived_rules_match_a_second_computation(name):
    x = np.random.default_rng(1).uniform(0, 1000, size=(3, 5, len(DETECTOR_JOINT_SETS[name]), 3))
    x[..., 2] /= 1000
    np.testing.assert_allclose(to_h36m17_derived(x, name, coco_thorax="mmpose"), by_hand(x, name), rtol=0, atol=1e-9)


def test_coco_thorax_is_raised_up_the_trunk_by_default():
    x = np.random.default_rng(2).uniform(0, 1000, size=(4, 17, 3))
    out = to_h36m17_derived(x, "coco17")
    shoulders, hips = (x[:, 5, :2] + x[:, 6, :2]) / 2, (x[:, 11, :2] + x[:, 12, :2]) / 2
    thorax = shoulders + THORAX_RAISE * (shoulders - hips)
    np.testing.assert_allclose(out[:, 8, :2], thorax, atol=1e-9)
    np.testing.assert_allclose(out[:, 7, :2], (hips + thorax) / 2, atol=1e-9)
    mmpose = to_h36m17_derived(x, "coco17", coco_thorax="mmpose")
    keep = [j for j in range(17) if j not in (7, 8)]
    np.testing.assert_array_equal(out[:, keep], mmpose[:, keep])
    with pytest.raises(ValueError, match="coco_thorax"):
        to_h36m17_derived(x, "coco17", coco_thorax="midpoint")


def test_h36m17_is_identity_and_nan_rows_stay_nan():
    x = h36m_pixels(4)
    np.testing.assert_array_equal(to_h36m17_derived(x, "h36m17"), x)
    coco = np.full((2, 17, 3), np.nan)
    coco[0] = 1.0
    out = to_h36m17_derived(coco, "coco17")
    assert np.isnan(out[1]).all() and not np.isnan(out[0]).any()


def test_derived_errors_name_the_set_and_the_shape():
    with pytest.raises(ValueError, match=r"'mpii'.*\(3, 17, 3\)"):
        to_h36m17_derived(np.zeros((3, 17, 3)), "mpii")
    with pytest.raises(ValueError, match=r"'body25'.*\(3, 17, 3\)"):
        to_h36m17_derived(np.zeros((3, 17, 3)), "body25")
    with pytest.raises(ValueError, match=r"'coco17'.*\(17, 2\)"):
        to_h36m17_derived(np.zeros((17, 2)), "coco17")


# --- round trips: writer -> reader -> Human3.6M-17 ------------------------------------------------------------------

# name: (write(path, kp), path name, expected format, joint set, file gives the image size, confidence kept)
WRITERS = {
    "coco": (lambda p, kp: df.write_coco(p, kp, SIZE), "ann.json", "coco", "coco17", True, False),
    "coco-results": (lambda p, kp: df.write_coco(p, kp, SIZE, results=True), "res.json", "coco", "coco17", False, True),
    "alphapose-halpe26": (lambda p, kp: df.write_alphapose(p, kp), "ap.json", "alphapose", "halpe26", False, True),
    "alphapose-coco17": (
        lambda p, kp: df.write_alphapose(p, kp, halpe=False),
        "ap.json",
        "alphapose",
        "coco17",
        False,
        True,
    ),
    "openpose-body25": (lambda p, kp: df.write_openpose(p, kp), "op", "openpose", "body25", False, True),
    "openpose-coco18": (lambda p, kp: df.write_openpose(p, kp, body25=False), "op", "openpose", "coco18", False, True),
    "mmpose": (lambda p, kp: df.write_mmpose(p, kp), "mm.json", "mmpose", "coco17", False, True),
    "mmpose-demo": (lambda p, kp: df.write_mmpose(p, kp, demo=True), "mm.json", "mmpose", "coco17", False, True),
    "videopose3d": (lambda p, kp: df.write_videopose3d(p, kp, SIZE), "vp.npz", "videopose3d", "coco17", True, False),
    "npy": (lambda p, kp: df.write_array(p, kp), "kp.npy", "array", "h36m17", False, True),
    "npz": (lambda p, kp: df.write_array(p, kp), "kp.npz", "array", "h36m17", False, True),
}


def read(path, fmt):
    return read_keypoints(path, joint_set="h36m17" if fmt == "array" else None)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_round_trip_gives_back_the_input(tmp_path, writer):
    write, name, fmt, joint_set, sized, keeps_conf = WRITERS[writer]
    kp = h36m_pixels()
    write(tmp_path / name, kp)
    kf = read(tmp_path / name, fmt)
    assert (kf.format, kf.joint_set, len(kf.frames)) == (fmt, joint_set, len(kp))
    assert kf.image_size == (SIZE if sized else None)
    assert all(len(frame) == 1 for frame in kf.frames) and len(kf.frame_names) == len(kp)
    out = to_h36m17_derived(tracks(kf)["0"], kf.joint_set, coco_thorax="mmpose")
    atol = 1e-3 if fmt == "videopose3d" else 1e-9  # float32 pixels
    conf = kp[..., 2] if keeps_conf else np.ones(kp.shape[:2])
    # Joints copied from a counterpart (or from a stand-in that the rule maps straight back).
    exact = LIMBS + ["neck_nose"] + (["pelvis", "thorax", "head"] if joint_set in ("halpe26", "h36m17") else [])
    exact += {"body25": ["pelvis", "thorax", "head"], "coco18": ["thorax", "head"], "coco17": ["head"]}.get(
        joint_set, []
    )
    idx = [J[j] for j in exact]
    np.testing.assert_allclose(out[:, idx, :2], kp[:, idx, :2], rtol=0, atol=atol)
    # Derived joints: the documented rules on the input itself, by hand.
    pelvis = kp[:, J["pelvis"], :2] if "pelvis" in exact else mid(kp, "left_hip", "right_hip")
    thorax = kp[:, J["thorax"], :2] if "thorax" in exact else mid(kp, "left_shoulder", "right_shoulder")
    np.testing.assert_allclose(out[:, J["pelvis"], :2], pelvis, rtol=0, atol=atol)
    np.testing.assert_allclose(out[:, J["thorax"], :2], thorax, rtol=0, atol=atol)
    if joint_set != "h36m17":
        np.testing.assert_allclose(out[:, J["spine"], :2], (pelvis + thorax) / 2, rtol=0, atol=atol)
    # Confidences: copied, or the minimum of the sources.
    np.testing.assert_allclose(out[:, idx, 2], conf[:, idx], rtol=0, atol=1e-9)
    if joint_set == "coco17" and keeps_conf:
        hips = conf[:, [J["left_hip"], J["right_hip"]]].min(axis=1)
        np.testing.assert_allclose(out[:, J["pelvis"], 2], hips)
        shoulders = conf[:, [J["left_shoulder"], J["right_shoulder"]]].min(axis=1)
        np.testing.assert_allclose(out[:, J["spine"], 2], np.minimum(hips, shoulders))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_frames_with_nobody_are_empty_frames(tmp_path, writer):
    write, name, fmt, *_ = WRITERS[writer]
    kp = h36m_pixels(8)
    kp[[2, 5]] = np.nan
    write(tmp_path / name, kp)
    kf = read(tmp_path / name, fmt)
    assert [len(f) for f in kf.frames] == [1, 1, 0, 1, 1, 0, 1, 1]
    person = tracks(kf)["0"]
    assert np.isnan(person[[2, 5]]).all() and not np.isnan(person[[0, 1, 3, 4, 6, 7]]).any()


def test_foot_stand_ins_are_unseen_and_nan_joints_undetected(tmp_path):
    kp = h36m_pixels(3)
    kp[1, J["left_wrist"], 0] = np.nan
    df.write_openpose(tmp_path / "op", kp)
    kf = read_keypoints(tmp_path / "op")
    body = DETECTOR_JOINT_SETS["body25"]
    points = kf.frames[0][0].keypoints
    assert (points[[body.index(j) for j in ("left_big_toe", "right_heel")], 2] == 0).all()
    np.testing.assert_array_equal(kf.frames[1][0].keypoints[body.index("left_wrist")], [0, 0, 0])
    assert not kf.frames[1][0].keypoints.flags.writeable


# --- the layouts as the tools write them ----------------------------------------------------------------------------


def test_writers_follow_the_real_layouts(tmp_path):
    kp = h36m_pixels(2)
    df.write_openpose(tmp_path / "op", kp)
    frame = json.loads((tmp_path / "op" / "h36m_000000000000_keypoints.json").read_text())
    person = frame["people"][0]
    assert frame["version"] == 1.3 and person["person_id"] == [-1] and len(person["pose_keypoints_2d"]) == 75
    assert set(person) == {"person_id", "pose_keypoints_2d"} | {
        f"{part}_keypoints_{d}" for part in ("face", "hand_left", "hand_right") for d in ("2d", "3d")
    } | {"pose_keypoints_3d"}
    df.write_alphapose(tmp_path / "ap.json", kp)
    entry = json.loads((tmp_path / "ap.json").read_text())[0]
    assert set(entry) == {"image_id", "category_id", "keypoints", "score", "box", "idx"}
    assert entry["image_id"] == "0.jpg" and entry["idx"] == [0.0] and len(entry["keypoints"]) == 78
    df.write_mmpose(tmp_path / "mm.json", kp)
    first = json.loads((tmp_path / "mm.json").read_text())[0]
    assert first["frame_id"] == 0 and set(first["instances"][0]) == {
        "keypoints",
        "keypoint_scores",
        "bbox",
        "bbox_score",
    }
    assert np.shape(first["instances"][0]["keypoints"]) == (17, 2) and np.shape(first["instances"][0]["bbox"]) == (1, 4)
    df.write_mmpose(tmp_path / "demo.json", kp, demo=True)
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert demo["meta_info"]["dataset_name"] == "coco" and demo["instance_info"][0]["frame_id"] == 1
    df.write_coco(tmp_path / "res.json", kp, SIZE, results=True)
    assert set(json.loads((tmp_path / "res.json").read_text())[0]) == {"image_id", "category_id", "keypoints", "score"}
    from ingest.untrusted import load_npz

    df.write_videopose3d(tmp_path / "vp.npz", kp, SIZE, video="test.mp4")
    data = load_npz(tmp_path / "vp.npz")
    meta, positions = data["metadata"].item(), data["positions_2d"].item()
    assert set(meta) == {"layout_name", "num_joints", "keypoints_symmetry", "video_metadata"}
    assert meta["video_metadata"] == {"test.mp4": {"w": SIZE[0], "h": SIZE[1]}}
    array = positions["test.mp4"]["custom"][0]
    assert array.dtype == np.float32 and array.shape == (2, 17, 2)


def test_alphapose_untracked_idx_lists_are_no_track_and_scores_clip(tmp_path):
    # As AlphaPose writes without tracking (hankong0222/MotionBERT alphapose-results.json): idx lists of box ids.
    keypoints = [10.0, 20.0, 0.9] * 17
    entries = [
        {
            "image_id": "0.jpg",
            "category_id": 1,
            "keypoints": keypoints,
            "score": 3.1,
            "box": [0, 0, 5, 5],
            "idx": [0.0],
        },
        {"image_id": "0.jpg", "category_id": 1, "keypoints": keypoints, "score": 1.4, "idx": [[0.0], [0.0]]},
        {"image_id": "3.jpg", "category_id": 1, "keypoints": [10.0, 20.0, 1.2] * 17, "score": 2.0, "idx": [0.0]},
    ]
    (tmp_path / "ap.json").write_text(json.dumps(entries))
    kf = read_keypoints(tmp_path / "ap.json")
    assert kf.format == "alphapose" and kf.frame_names == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert [len(f) for f in kf.frames] == [2, 0, 0, 1] and kf.frames[0][0].track is None
    assert kf.frames[0][0].score == 3.1 and (kf.frames[3][0].keypoints[:, 2] == 1.0).all()
    assert list(tracks(kf)) == ["0"]


def test_frame_order_is_numeric_with_gaps_filled(tmp_path):
    coco = [{"image_id": i, "category_id": 1, "keypoints": [float(i), 1.0, 1.0] * 17, "score": 0.5} for i in (12, 9)]
    (tmp_path / "res.json").write_text(json.dumps(coco))
    kf = read_keypoints(tmp_path / "res.json")
    assert kf.format == "coco" and kf.frame_names == ["9", "10", "11", "12"]
    assert [len(f) for f in kf.frames] == [1, 0, 0, 1] and kf.frames[3][0].keypoints[0, 0] == 12.0
    ap = [{"image_id": f"frame_{i:05d}.png", "keypoints": [float(i), 1.0, 1.0] * 26, "score": 1.0} for i in (3, 1)]
    (tmp_path / "ap.json").write_text(json.dumps(ap))
    kf = read_keypoints(tmp_path / "ap.json")
    assert (kf.format, kf.joint_set) == ("alphapose", "halpe26")
    assert kf.frame_names == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    named = [{"image_id": n, "keypoints": [1.0, 1.0, 1.0] * 17} for n in ("b.jpg", "a.jpg")]
    (tmp_path / "named.json").write_text(json.dumps(named))
    assert read_keypoints(tmp_path / "named.json").frame_names == ["a.jpg", "b.jpg"]
    folder = tmp_path / "op"
    folder.mkdir()
    for i in (10, 9):
        person = {"person_id": [-1], "pose_keypoints_2d": [float(i), 1.0, 0.5] * 18}
        (folder / f"v_{i}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": [person]}))
    kf = read_keypoints(folder)
    assert kf.frame_names == ["v_9_keypoints.json", "v_10_keypoints.json"] and kf.joint_set == "coco18"
    assert kf.frames[0][0].score == 0.5


def test_mmpose_single_image_scores_above_one_and_meta_joint_set(tmp_path):
    instance = {
        "keypoints": [[1.0, 2.0]] * 17,
        "keypoint_scores": [1.07] * 17,
        "bbox": [[0, 0, 4, 4]],
        "bbox_score": 0.9,
    }
    (tmp_path / "img.json").write_text(json.dumps([instance]))
    kf = read_keypoints(tmp_path / "img.json")
    assert (kf.format, kf.frame_names, kf.frames[0][0].score) == ("mmpose", ["img"], 0.9)
    assert (kf.frames[0][0].keypoints[:, 2] == 1.0).all()
    demo = {"meta_info": {"dataset_name": "h36m"}, "instance_info": [{"frame_id": 1, "instances": [instance]}]}
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    assert read_keypoints(tmp_path / "demo.json").joint_set == "h36m17"


def test_videopose3d_selects_a_video(tmp_path):
    kp = h36m_pixels(4)
    df.write_videopose3d(tmp_path / "one.npz", kp, SIZE, video="walk.mp4")
    kf = read_keypoints(tmp_path / "one.npz", video="walk.mp4")
    assert kf.frame_names == ["0", "1", "2", "3"] and kf.frames[0][0].score == 1.0
    positions = {v: {"custom": [kp[:, :, :2].astype("float32")]} for v in ("a.mp4", "b.mp4")}
    np.savez(tmp_path / "two.npz", positions_2d=positions, metadata={"layout_name": "h36m"})
    assert read_keypoints(tmp_path / "two.npz", video="b.mp4").joint_set == "h36m17"
    with pytest.raises(KeypointError, match=r"two\.npz: .*'a\.mp4', 'b\.mp4'"):
        read_keypoints(tmp_path / "two.npz")
    with pytest.raises(KeypointError, match=r"two\.npz: .*no video 'c\.mp4'"):
        read_keypoints(tmp_path / "two.npz", video="c.mp4")


# --- tracks -------------------------------------------------------------------------------------------------------


def det(value: float, score: float, track: str | None) -> Detection:
    return Detection(keypoints=np.full((17, 3), value), score=score, track=track)


def test_tracks_by_id_with_absences_and_duplicates():
    frames = [[det(1, 0.5, "7"), det(2, 0.9, "3")], [det(3, 0.2, "7"), det(4, 0.8, "7")], []]
    kf = KeypointFile(path=None, format="mmpose", joint_set="coco17", frames=frames, frame_names=["0", "1", "2"])
    people = tracks(kf)
    assert list(people) == ["7", "3"] and people["7"].shape == (3, 17, 3)
    assert people["7"][0, 0, 0] == 1 and people["7"][1, 0, 0] == 4 and np.isnan(people["7"][2]).all()
    assert people["3"][0, 0, 0] == 2 and np.isnan(people["3"][1:]).all()


def test_tracks_without_ids_keep_the_best_of_each_frame():
    frames = [[det(1, 0.5, None), det(2, 0.9, "3")], [], [det(5, 0.1, None)]]
    kf = KeypointFile(path=None, format="coco", joint_set="coco17", frames=frames, frame_names=["0", "1", "2"])
    person = tracks(kf)
    assert list(person) == ["0"] and person["0"][0, 0, 0] == 2 and person["0"][2, 0, 0] == 5
    assert np.isnan(person["0"][1]).all()
    empty = KeypointFile(path=None, format="coco", joint_set="body25", frames=[[], []], frame_names=["0", "1"])
    assert np.isnan(tracks(empty)["0"]).all() and tracks(empty)["0"].shape == (2, 25, 3)


def test_tracks_from_files(tmp_path):
    df.write_openpose(tmp_path / "op", h36m_pixels(3), track=4)
    assert list(tracks(read_keypoints(tmp_path / "op"))) == ["4"]
    df.write_mmpose(tmp_path / "mm.json", h36m_pixels(3), track=2)
    assert list(tracks(read_keypoints(tmp_path / "mm.json"))) == ["2"]
    df.write_alphapose(tmp_path / "ap.json", h36m_pixels(3), track=5)
    assert list(tracks(read_keypoints(tmp_path / "ap.json"))) == ["5"]


# --- malformed files ------------------------------------------------------------------------------------------------

ENTRY = {"image_id": 0, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17, "score": 0.5}


def bad_json(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notjson.json", "{'people': [", r"whole file: not JSON"),
        ("empty.json", "  \n", r"whole file: empty file"),
        ("unknown.json", {"frames": []}, r"whole file: unknown structure"),
        ("nolist.json", [], r"whole file: an empty list: no frames"),
        ("count.json", [ENTRY, ENTRY | {"keypoints": [1.0, 2.0, 0.5] * 16}], r"entry 1: 16 keypoints per person"),
        ("odd.json", [ENTRY | {"keypoints": [1.0, 2.0] * 17}], r"entry 0: keypoints has 34 values"),
        ("strings.json", [ENTRY | {"keypoints": ["1"] * 51}], r"entry 0: keypoints is not a list of numbers"),
        ("inf.json", [ENTRY, ENTRY | {"keypoints": [1e999, 2.0, 0.5] * 17}], r"entry 1: infinite"),
        ("score.json", [ENTRY | {"score": "high"}], r"entry 0: score 'high'"),
        ("mm3d.json", [{"frame_id": 0, "instances": [{"keypoints": [[1, 2, 3]] * 17, "keypoint_scores": [1] * 17}]}],
         r"entry\[0\]\.instances\[0\]: keypoints are not \[x, y\] pairs"),
        ("mmdup.json", [{"frame_id": 0, "instances": []}, {"frame_id": 0, "instances": []}],
         r"entry\[1\]: frame_id 0 appears twice"),
        ("mmnobody.json", [{"frame_id": 0, "instances": []}], r"entry: nobody detected in any frame"),
        ("annot.json", {"images": [{"id": 1}], "annotations": [ENTRY]}, r"annotations\[0\]: image_id 0 is not in"),
        ("openpose.json", {"people": [{"pose_keypoints_2d": [1.0, 2.0, 0.5] * 20}]},
         r"frame file openpose\.json, people\[0\]: 20 keypoints per person"),
    ],
)  # fmt: skip
def test_malformed_json_names_the_file_and_the_entry(tmp_path, name, content, message):
    path = bad_json(tmp_path, name, content)
    with pytest.raises(KeypointError, match=rf"^{re.escape(str(path))}: {message}") as err:
        read_keypoints(path)
    assert "\n" not in str(err.value)


def test_joint_set_checks(tmp_path):
    path = bad_json(tmp_path, "res.json", [ENTRY])
    with pytest.raises(KeypointError, match=r"res\.json: entry 0: 17 keypoints per person, joint set 'body25' has 25"):
        read_keypoints(path, joint_set="body25")
    with pytest.raises(KeypointError, match=r"res\.json: unknown joint set 'mpii'"):
        read_keypoints(path, joint_set="mpii")
    with pytest.raises(KeypointError, match=r"res\.json: video='x' selects a video of a VideoPose3D"):
        read_keypoints(path, video="x")
    with pytest.raises(FileNotFoundError):
        read_keypoints(tmp_path / "missing.json")


def test_openpose_folder_errors(tmp_path):
    folder = tmp_path / "op"
    folder.mkdir()
    with pytest.raises(KeypointError, match=r"op: folder: no OpenPose \*_keypoints\.json files"):
        read_keypoints(folder)
    df.write_openpose(folder, h36m_pixels(2))
    df.write_openpose(folder, h36m_pixels(1), video="other")
    with pytest.raises(KeypointError, match=r"frame file .*frame 0 also in"):
        read_keypoints(folder)
    (folder / "other_000000000000_keypoints.json").unlink()
    df.write_openpose(tmp_path / "coco18", h36m_pixels(1), body25=False)
    (tmp_path / "coco18" / "h36m_000000000000_keypoints.json").rename(folder / "h36m_000000000002_keypoints.json")
    with pytest.raises(KeypointError, match=r"frame file h36m_000000000002_keypoints\.json, people\[0\]: 18 keypoints"):
        read_keypoints(folder)
    (folder / "h36m_000000000002_keypoints.json").write_text("")
    with pytest.raises(KeypointError, match=r"h36m_000000000002_keypoints\.json: whole file: empty file"):
        read_keypoints(folder)


def test_array_errors(tmp_path):
    kp = h36m_pixels(3)
    np.save(tmp_path / "kp.npy", kp)
    with pytest.raises(KeypointError, match=r"kp\.npy: array: a plain keypoint array needs joint_set"):
        read_keypoints(tmp_path / "kp.npy")
    with pytest.raises(KeypointError, match=r"kp\.npy: array: 17 keypoints per person, joint set 'body25'"):
        read_keypoints(tmp_path / "kp.npy", joint_set="body25")
    np.save(tmp_path / "flat.npy", kp[..., 0])
    with pytest.raises(KeypointError, match=r"flat\.npy: array: not a numeric \(T, J, 2 \| 3\) array"):
        read_keypoints(tmp_path / "flat.npy", joint_set="h36m17")
    np.save(tmp_path / "none.npy", kp[:0])
    with pytest.raises(KeypointError, match=r"none\.npy: no frames"):
        read_keypoints(tmp_path / "none.npy", joint_set="h36m17")
    np.savez(tmp_path / "two.npz", a=kp, b=kp)
    with pytest.raises(KeypointError, match=r"two\.npz: whole file: keys \['a', 'b'\]"):
        read_keypoints(tmp_path / "two.npz", joint_set="h36m17")
    bad = kp.copy()
    bad[1, 4, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(KeypointError, match=r"inf\.npy: array frame 1: infinite"):
        read_keypoints(tmp_path / "inf.npy", joint_set="h36m17")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(KeypointError, match=r"junk\.npy: whole file: not a plain \.npy array"):
        read_keypoints(tmp_path / "junk.npy", joint_set="h36m17")


class Payload:
    """Any class a pickle may name: the data-only loader must refuse it."""


def test_npz_pickles_are_refused(tmp_path):
    np.savez(tmp_path / "evil.npz", positions_2d=np.array(Payload(), dtype=object))
    with pytest.raises(KeypointError, match=r"evil\.npz: whole file: .*not an array type"):
        read_keypoints(tmp_path / "evil.npz")
