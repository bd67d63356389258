"""AMASS reader: both releases, file variations, resampling, virtual cameras, the Ray job, real files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ingest.amass import AmassReader, add_arguments, load_motion, motion_names, reader_from_args, resample
from ingest.camera import look_at_camera
from ingest.job import run_ingest
from ingest.samples.amass import smplh_g_arrays, smplx_n_arrays, write
from ingest.samples.stand_in import write_stand_in
from ingest.skeleton import H36M17
from ingest.store import MotionStore


@pytest.fixture(scope="module")
def body_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("amass_body_models")
    write_stand_in(folder)
    return folder


def save(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def check_sequences(seqs, frames, views=4):
    assert len(seqs) == views
    for seq in seqs:
        seq.validate()
        assert seq.pose3d.shape == (frames, 17, 3) and seq.meta["fps"] == 50 and seq.meta["split"] == "train"
        assert seq.meta["stand_in_body_model"] is True
        # 2D is the pinhole projection of the stored 3D (the virtual cameras have no distortion), conf 1.
        f, c = np.array(seq.meta["f"]), np.array(seq.meta["c"])
        expected = seq.pose3d[..., :2] / seq.pose3d[..., 2:] * f + c
        assert np.allclose(seq.pose2d[..., :2], expected, atol=1e-2) and np.all(seq.pose2d[..., 2] == 1)
        assert np.all(seq.pose3d[..., 2] > 0.5)
        assert np.all((seq.pose2d[..., :2] >= 0) & (seq.pose2d[..., :2] <= 1000))


def test_smplh_g_release(body_models, tmp_path):
    path = save(tmp_path / "CMU" / "07" / "07_01_poses.npz", **smplh_g_arrays(240, 120.0, "male"))
    seqs = AmassReader(body_models).read(path)
    check_sequences(seqs, frames=100)  # floor(239 * 50 / 120) + 1
    meta = seqs[0].meta
    assert meta["id"] == "CMU_07_07_01_poses_v0" and meta["subject"] == "CMU/07"
    assert meta["action"] == "07_01_poses" and meta["camera"] == "v0" and meta["model_type"] == "smplh"
    assert meta["gender"] == "male" and meta["body_model"].endswith("SMPLH_MALE.pkl")
    assert [s.meta["id"] for s in seqs] == [f"CMU_07_07_01_poses_v{k}" for k in range(4)]


def test_smplx_n_release_split_keys_and_poses_agree(body_models, tmp_path):
    arrays = smplx_n_arrays(120, 60.0, "neutral")
    split = {k: v for k, v in arrays.items() if k != "poses"}
    whole = {
        k: v for k, v in arrays.items() if k not in ("root_orient", "pose_body", "pose_jaw", "pose_eye", "pose_hand")
    }
    reader = AmassReader(body_models)
    a = reader.read(save(tmp_path / "a" / "X" / "s1" / "m_stageii.npz", **split))
    b = reader.read(save(tmp_path / "b" / "X" / "s1" / "m_stageii.npz", **whole))
    check_sequences(a, frames=100)  # floor(119 * 50 / 60) + 1
    assert a[0].meta["model_type"] == "smplx" and a[0].meta["gender"] == "neutral"
    for sa, sb in zip(a, b, strict=True):
        assert np.array_equal(sa.pose3d, sb.pose3d) and sa.meta["R"] == sb.meta["R"]


def test_variations(body_models, tmp_path):
    reader = AmassReader(body_models)
    base = smplh_g_arrays(130, 120.0, "female", seed=4)
    plain = reader.read(save(tmp_path / "str" / "S" / "p" / "m.npz", **base))
    # gender as bytes, no dmpls, extra marker keys: same result.
    varied = {k: v for k, v in base.items() if k != "dmpls"}
    varied.update(
        gender=np.array(b"female"),
        marker_data=np.zeros((130, 5, 3)),
        marker_labels=np.array([b"C7", b"LFHD", b"RFHD", b"STRN", b"T10"]),
    )
    other = reader.read(save(tmp_path / "bytes" / "S" / "p" / "m.npz", **varied))
    assert other[0].meta["gender"] == "female"
    for sa, sb in zip(plain, other, strict=True):
        assert np.array_equal(sa.pose3d, sb.pose3d)
    # A non-integer frame rate keeps the duration within one 50 fps frame.
    odd = dict(base, mocap_framerate=np.array(120.0000458))
    seqs = reader.read(save(tmp_path / "odd" / "S" / "p" / "m.npz", **odd))
    assert len(seqs[0]) == int(129 * 50 / 120.0000458) + 1
    # A shape-only file holds nothing to convert.
    assert reader.read(save(tmp_path / "S" / "p" / "shape.npz", betas=np.zeros(16), gender=np.array("male"))) == []
    # The gender override picks another model.
    male = AmassReader(body_models, gender_override="male").read(tmp_path / "str" / "S" / "p" / "m.npz")
    assert male[0].meta["gender"] == "male" and not np.allclose(male[0].pose3d, plain[0].pose3d)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"poses": np.zeros((10, 100))}, "'poses' has shape \\(10, 100\\)"),
        ({"trans": np.full((10, 3), np.nan)}, "'trans' holds non-finite"),
        ({"trans": np.zeros((9, 3))}, "'trans' has shape \\(9, 3\\), expected \\(10, 3\\)"),
        ({"gender": np.array("robot")}, "'gender' is 'robot'"),
        ({"mocap_framerate": np.array(0.0)}, "'mocap_framerate'"),
        ({"surface_model_type": np.array("smplx")}, "surface_model_type is 'smplx' but the poses are smplh"),
        ({"poses": np.zeros((0, 156)), "trans": np.zeros((0, 3))}, "no frames"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, change, message):
    arrays = dict(smplh_g_arrays(10, 120.0), **change)
    path = save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_motion(path)
    assert str(path) in str(err.value)


def test_missing_keys_and_garbage(tmp_path):
    arrays = smplh_g_arrays(10, 120.0)
    for key in ("trans", "gender", "mocap_framerate"):
        path = save(tmp_path / f"no_{key}.npz", **{k: v for k, v in arrays.items() if k != key})
        with pytest.raises(ValueError, match=key.split("_")[0]):
            load_motion(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz: not a readable npz"):
        load_motion(garbage)


def test_resample_exact_even_frames_and_slerp():
    rng = np.random.default_rng(0)
    pose, trans = rng.normal(size=(101, 52, 3)), rng.normal(size=(101, 3))
    out_pose, out_trans = resample(pose, trans, 100.0)
    assert np.array_equal(out_pose, pose[::2]) and np.array_equal(out_trans, trans[::2])
    # A rotation about a fixed axis at constant speed, sampled at 120 fps: slerp is exact at 50 fps.
    axis = np.array([1.0, 2.0, 2.0]) / 3
    t = np.arange(25) / 120.0
    pose = (0.8 * t)[:, None, None] * axis * np.ones((1, 2, 1))
    out_pose, out_trans = resample(pose, np.stack([t, 2 * t, 0 * t], 1), 120.0)
    t50 = np.arange(len(out_pose)) / 50.0
    assert len(out_pose) == 11 and t50[-1] <= t[-1] < t50[-1] + 1 / 50  # 24 / 120 s = 10 / 50 s
    assert np.allclose(out_pose, (0.8 * t50)[:, None, None] * axis, atol=1e-12)
    assert np.allclose(out_trans[:, 1], 2 * t50)
    # Halfway between two rotations about different axes: the geodesic midpoint.
    a, b = Rotation.from_rotvec([0.0, 0.0, 1.0]), Rotation.from_rotvec([1.0, 0.0, 0.0])
    mid, _ = resample(np.stack([a.as_rotvec(), b.as_rotvec()])[:, None], np.zeros((2, 3)), 25.0)
    m = Rotation.from_rotvec(mid[1, 0])
    assert np.isclose((a.inv() * m).magnitude(), (m.inv() * b).magnitude())
    assert np.isclose((a.inv() * m).magnitude() * 2, (a.inv() * b).magnitude())


def test_100fps_motion_gives_its_even_frames(body_models, tmp_path):
    arrays = smplh_g_arrays(101, 100.0, seed=5)
    half = dict(arrays, poses=arrays["poses"][::2], trans=arrays["trans"][::2], mocap_framerate=np.array(50.0))
    reader = AmassReader(body_models)
    a = reader.read(save(tmp_path / "a" / "S" / "p" / "m.npz", **arrays))
    b = reader.read(save(tmp_path / "b" / "S" / "p" / "m.npz", **half))
    for sa, sb in zip(a, b, strict=True):
        assert len(sa) == 51 and np.array_equal(sa.pose3d, sb.pose3d) and sa.meta["T"] == sb.meta["T"]


def test_cameras_deterministic_placed_and_upright(body_models, tmp_path):
    path = save(tmp_path / "S" / "p" / "walk.npz", **smplh_g_arrays(200, 120.0, seed=6))
    first = AmassReader(body_models, views=3).read(path)
    again = AmassReader(body_models, views=3).read(path)
    for sa, sb in zip(first, again, strict=True):
        assert sa.meta == sb.meta and np.array_equal(sa.pose2d, sb.pose2d)
    other = AmassReader(body_models, views=3).read(
        save(tmp_path / "S" / "q" / "walk.npz", **smplh_g_arrays(200, 120.0, seed=6))
    )
    assert other[0].meta["T"] != first[0].meta["T"]  # another motion id, other cameras
    for seq in first:
        centre = np.mean(seq.pose3d[:, 0], axis=0)
        assert 2.0 < np.linalg.norm(centre) < 9.0
        assert 1140 <= seq.meta["f"][0] <= 1150 and seq.meta["width"] == seq.meta["height"] == 1000
        assert 1.0 < seq.meta["T"][2] < 2.0  # eye height above the floor (feet near z = 0)
        assert np.all(seq.pose2d[:, H36M17.index("head"), 1] < seq.pose2d[:, 0, 1])  # upright


def test_look_at_camera():
    cam = look_at_camera([4.0, 0.0, 1.5], [0.0, 0.0, 1.0], [0, 0, 1], [1000.0, 1000.0], [500.0, 500.0], 1000, 1000)
    assert np.allclose(cam.project(cam.world_to_camera([0.0, 0.0, 1.0])), [500, 500])
    assert np.allclose(cam.R @ cam.R.T, np.eye(3)) and np.isclose(np.linalg.det(cam.R), 1)
    above = cam.project(cam.world_to_camera([0.0, 0.0, 2.0]))
    assert above[1] < 500 and np.isclose(above[0], 500)  # world up is image up, no roll
    with pytest.raises(ValueError):
        look_at_camera([0, 0, 5.0], [0, 0, 1.0], [0, 0, 1], [1000.0, 1000.0], [500.0, 500.0], 1000, 1000)


def test_cli_options(body_models):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    reader = reader_from_args(parser.parse_args(["--body-models", str(body_models), "--views", "2"]))
    assert reader.views == 2 and reader.regressor is None and reader.gender_override is None
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --body-models is required


def test_ray_job_with_one_broken_file(ray_local, tmp_path):
    write(tmp_path)
    src = tmp_path / "amass"
    (src / "Broken" / "b1").mkdir(parents=True)
    (src / "Broken" / "b1" / "cut_poses.npz").write_bytes(
        (src / "SampleH" / "s01" / "walk_01_poses.npz").read_bytes()[:500]
    )
    reader = AmassReader(tmp_path / "body_models", views=2)
    store_url = str(tmp_path / "store")
    summary = run_ingest(reader, src, store_url, progress=False)
    assert summary.files == 5 and summary.converted == 4 and len(summary.failed) == 1
    assert "cut_poses.npz" in summary.failed[0]["source"] and "not a readable npz" in summary.failed[0]["error"]
    store = MotionStore.open(store_url)
    errors = store.read_errors("amass")
    assert len(errors) == 1 and errors[0]["source"].endswith("cut_poses.npz")
    view = store["amass"]
    assert len(view) == 6 and all(m["stand_in_body_model"] for m in view.metas)  # 3 motions x 2 views
    assert view.num_frames == 2 * (150 + 100 + 150)
    assert all(m["body_model"].endswith("model.npz") for m in view.metas)
    assert dict(store.open_part("amass", "SampleH_s01_shape").attrs)["sequences"] == []
    again = run_ingest(reader, src, store_url, progress=False)
    assert again.skipped == 4 and len(again.failed) == 1
    assert json.loads(json.dumps(view.metas[0]))["fps"] == 50


@pytest.fixture(scope="module")
def real_sequences(real_data, body_models):
    files = sorted((real_data / "amass").rglob("*.npz"))
    if not files:
        pytest.skip(f"no AMASS files under {real_data / 'amass'}")
    reader = AmassReader(body_models)
    return [(path, load_motion(path), reader.read(path)) for path in files]


def test_real_amass_files(real_sequences):
    for path, motion, seqs in real_sequences:
        assert motion.model_type == "smplh" and len(seqs) == 4, path
        source_duration = (len(motion.full_pose) - 1) / motion.fps
        for seq in seqs:
            duration = (len(seq) - 1) / 50
            assert duration <= source_duration < duration + 1 / 50, path
            assert seq.meta["id"].startswith(motion_names(path)[2])
            assert np.all(seq.pose3d[..., 2] > 0.5), "joints behind the camera"
            uv = seq.pose2d[..., :2]
            assert np.all((uv >= 0) & (uv < 1000)), "joints outside the image"
            # Standing frames (pelvis-to-head direction within 45 degrees of vertical in the camera's
            # world): the head is above the pelvis in the image.
            head_up = seq.pose2d[:, H36M17.index("head"), 1] < seq.pose2d[:, 0, 1]
            world = (seq.pose3d.astype(np.float64) @ np.array(seq.meta["R"])) + np.array(seq.meta["T"])
            spine = world[:, H36M17.index("head")] - world[:, 0]
            standing = spine[:, 2] > np.linalg.norm(spine, axis=1) * np.cos(np.pi / 4)
            assert standing.mean() > 0.5 and np.all(head_up[standing]), path


def test_files_whose_part_names_collide_all_fail_naming_each_other(ray_local, tmp_path):
    """``walk_01_poses.npz`` and ``walk 01_poses.npz`` map to one part name: both fail, each naming the other,
    nothing of either is stored, the other files convert, and a re-run says the same."""
    write(tmp_path)
    src = tmp_path / "amass"
    first = src / "SampleH" / "s01" / "walk_01_poses.npz"
    twin = first.with_name("walk 01_poses.npz")
    twin.write_bytes(first.read_bytes())
    reader = AmassReader(tmp_path / "body_models", views=2)
    for _ in range(2):
        summary = run_ingest(reader, src, str(tmp_path / "store"), progress=False)
        assert summary.files == 5 and len(summary.failed) == 2 and summary.converted + summary.skipped == 3
        failed = {r["source"]: r["error"] for r in summary.failed}
        assert set(failed) == {str(first), str(twin)}
        assert str(twin) in failed[str(first)] and str(first) in failed[str(twin)]
        assert "'SampleH_s01_walk_01_poses'" in failed[str(first)]
        assert "SampleH_s01_walk_01_poses" not in MotionStore.open(str(tmp_path / "store")).part_names("amass")
