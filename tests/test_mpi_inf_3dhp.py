"""MPI-INF-3DHP: joint maps, calibration formats, both readers on generated native files, bad input, Ray."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from ingest import mpi_inf_3dhp as mpi
from ingest.camera import Camera
from ingest.conventions import resample_times
from ingest.job import DroppedByRule, run_ingest
from ingest.mpi_inf_3dhp_calib import TEST_CAMERA_FACTS, parse_skeletool, parse_tc, tc_camera, ts_camera
from ingest.samples.mpi_inf_3dhp import (
    UNIVERSAL_SCALE,
    studio_cameras,
    train_motion,
    ts_camera_of,
    ts_labels,
    ts_motion,
    write,
    write_annot_mat,
    write_skeletool,
    write_v73,
)
from ingest.skeleton import (
    H36M17,
    JOINT_SETS,
    MPI_INF_3DHP17,
    MPI_INF_3DHP28,
    MPI_INF_3DHP28_TO_17,
    TO_H36M17,
)
from ingest.store import MotionStore

H36M32_KEPT = TO_H36M17["h36m32"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    write(out)
    return out / "mpi_inf_3dhp"


def expected_camera_joints(world32: np.ndarray, camera: Camera) -> np.ndarray:
    """The generating skeleton in camera coordinates (m), Human3.6M-17, without any 3DHP map."""
    return camera.world_to_camera(world32[:, H36M32_KEPT])


def by_id(sequences):
    return {s.meta["id"]: s for s in sequences}


# -- joint sets ----------------------------------------------------------------------------------------
def test_joint_maps_name_the_toolkit_correspondence():
    names = [MPI_INF_3DHP28.joints[i] for i in TO_H36M17["mpi_inf_3dhp28"]]
    assert names == [
        "pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine",
        "neck",
        "head",
        "head_top",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    ]
    # the toolkit's 'relevant' set, 1-based, names the 17 test joints
    assert MPI_INF_3DHP17.joints == tuple(
        MPI_INF_3DHP28.joints[i - 1] for i in [8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7]
    )
    # 28 -> 17 -> H36M-17 is the direct map
    np.testing.assert_array_equal(MPI_INF_3DHP28_TO_17[TO_H36M17["mpi_inf_3dhp17"]], TO_H36M17["mpi_inf_3dhp28"])
    assert JOINT_SETS["mpi_inf_3dhp28"] is MPI_INF_3DHP28 and JOINT_SETS["mpi_inf_3dhp17"] is MPI_INF_3DHP17


@pytest.mark.parametrize("joint_set", [MPI_INF_3DHP28, MPI_INF_3DHP17])
def test_flip_commutes_with_the_map_and_tree_is_rooted(joint_set):
    x = np.random.default_rng(0).normal(size=(4, len(joint_set), 3))
    index = TO_H36M17[joint_set.name]
    np.testing.assert_array_equal(
        x[:, joint_set.flip_permutation()][:, index], x[:, index][:, H36M17.flip_permutation()]
    )
    for j in range(len(joint_set)):  # every chain of parents ends at the single root
        seen, k = set(), j
        while joint_set.parents[k] >= 0:
            assert k not in seen
            seen.add(k)
            k = joint_set.parents[k]
        assert joint_set.joints[k] == "pelvis"


# -- calibration ---------------------------------------------------------------------------------------
def test_skeletool_round_trip(samples):
    parsed = parse_skeletool(samples / "S1" / "Seq1" / "camera.calibration")
    for index, cam in studio_cameras().items():
        got = parsed[index]
        np.testing.assert_allclose(got.R, cam.R, atol=1e-11)
        np.testing.assert_allclose(got.T, cam.T, atol=1e-11)
        np.testing.assert_allclose(np.r_[got.f, got.c], np.r_[cam.f, cam.c], atol=1e-8)
        assert (got.width, got.height, got.id) == (2048, 2048, f"cam_{index}")


def test_tc_conversion_by_hand():
    cam, dist = tc_camera(
        {
            "name": "x",
            "sensorSize": (10, 5),
            "focalLength": 5.0,
            "pixelAspect": 1.1,
            "centerOffset": (1.0, -0.5),
            "distortion": (0.1, 0, 0, 0, 0),
            "origin": (1000, 0, 0),
            "up": (0, 0, 1),
            "right": (0, 1, 0),
        },
        1000,
        500,
    )
    np.testing.assert_allclose(cam.f, [500.0, 550.0])  # 5 mm / 10 mm * 1000 px, times the aspect
    np.testing.assert_allclose(cam.c, [600.0, 200.0])  # 500 + 1/10 * 1000, 250 - 0.5/5 * 500
    np.testing.assert_allclose(cam.R, [[0, 1, 0], [0, 0, -1], [-1, 0, 0]])
    np.testing.assert_allclose(cam.world_to_camera([0.0, 0.0, 0.0]), [0, 0, 1.0])  # looks at the origin
    assert dist[0] == 0.1


# Skeletool calibration of the studio's camera 8 (public; e.g. in several 3DHP viewers' sources): intrinsic
# fx, fy, cx, cy and the world-to-camera extrinsic in mm.
CAM8_SKELETOOL = """Skeletool Camera Calibration File V1.0
name          8
  sensor      10 10
  size        2048 2048
  animated    0
  intrinsic   1500.172 0 1017.387 0 0 1500.837 1043.032 0 0 0 1 0 0 0 0 1
  extrinsic   0.000575281 0.06160985 -0.9981001 221.3543 0.2082146 -0.9762325 -0.06013997 659.87 \
-0.978083 -0.2077844 -0.01338968 3644.688 0 0 0 1
  radial      0
"""


def test_real_test_calibration_matches_studio_camera_8(real_data, tmp_path):
    calib_dir = real_data / "mpi_inf_3dhp" / "test_util" / "camera_calibration"
    if not calib_dir.is_dir():
        pytest.skip(f"{calib_dir} is absent")
    for name, facts in TEST_CAMERA_FACTS.items():
        fields = parse_tc(calib_dir / name)
        assert len(fields) == 1 and fields[0] == facts  # the embedded numbers are the file's
    cam, dist, source = ts_camera("TS2", calib_dir)
    assert source == str(calib_dir / "ts1-4cameras.calib") and not dist.any()
    (tmp_path / "c").write_text(CAM8_SKELETOOL)
    studio = parse_skeletool(tmp_path / "c")[8]
    np.testing.assert_allclose(cam.f, studio.f, atol=0.01)
    np.testing.assert_allclose(cam.c, studio.c, atol=0.01)
    np.testing.assert_allclose(cam.R, studio.R, atol=1e-5)
    np.testing.assert_allclose(cam.T, studio.T, atol=1e-3)
    outdoor, dist, _ = ts_camera("TS6", calib_dir)
    assert (outdoor.width, outdoor.height) == (1920, 1080) and dist[0] < -0.2
    np.testing.assert_allclose(np.r_[outdoor.f[0], outdoor.c], [1683.98345952, 939.85754016, 560.14074317])


def test_calibration_errors_name_the_file(tmp_path):
    bad = tmp_path / "camera.calibration"
    bad.write_text("Something else\n")
    with pytest.raises(ValueError, match=f"{bad}.*first line"):
        parse_skeletool(bad)
    bad.write_text(CAM8_SKELETOOL.replace("1500.172 0", "1500.172"))
    with pytest.raises(ValueError, match="camera 8: intrinsic has 15 values"):
        parse_skeletool(bad)


# -- readers -------------------------------------------------------------------------------------------
def test_train_reader_recovers_skeleton_and_projection(samples):
    reader = mpi.MPIINF3DHPReader(annot="annot3")
    cams = studio_cameras()
    for seq in (1, 2):
        sequences = by_id(reader.read(samples / "S1" / f"Seq{seq}" / "annot.mat"))
        assert sorted(s.meta["camera_index"] for s in sequences.values()) == [0, 1, 2, 4, 5, 6, 7, 8]
        world, fps = train_motion(1, seq)
        step = int(50 / fps)
        for index in (0, 8):
            s = sequences[f"S1_Seq{seq}_cam_{index}"]
            expected = expected_camera_joints(world, cams[index])
            assert len(s) == (len(world) - 1) * step + 1 and s.meta["fps"] == 50 and s.meta["source_fps"] == fps
            np.testing.assert_allclose(s.pose3d[::step], expected, atol=1e-6)
            # interpolated frames lie halfway between their source frames
            if step == 2:
                np.testing.assert_allclose(s.pose3d[1::2], (expected[:-1] + expected[1:]) / 2, atol=1e-6)
            projected = Camera.from_meta(s.meta).project(s.pose3d[::step].astype(np.float64))
            assert np.abs(projected - s.pose2d[::step, :, :2]).max() < 0.01
            assert (s.pose2d[..., 2] == 1).all() and s.frames["valid"].all() and (s.frames["activity"] == -1).all()
            assert (s.meta["subject"], s.meta["split"], s.meta["camera"]) == ("S1", "train", f"cam_{index}")
            assert (s.meta["width"], s.meta["height"]) == (2048, 2048)


def test_univ_annot3_is_the_default(samples):
    s = by_id(mpi.MPIINF3DHPReader().read(samples / "S1" / "Seq2" / "annot.mat"))["S1_Seq2_cam_4"]
    expected = expected_camera_joints(train_motion(1, 2)[0], studio_cameras()[4])
    expected = expected[:, :1] + UNIVERSAL_SCALE * (expected - expected[:, :1])
    np.testing.assert_allclose(s.pose3d, expected, atol=1e-6)
    assert s.meta["pose3d_source"] == "univ_annot3"


def test_test_reader_recovers_skeleton_labels_and_projection(samples):
    for name in ("TS1", "TS5"):
        [s] = mpi.MPIINF3DHPReader(annot="annot3").read(samples / name / "annot_data.mat")
        world, fps = ts_motion(name)
        camera = ts_camera_of(name)
        step = int(50 / fps)
        np.testing.assert_allclose(s.pose3d[::step], expected_camera_joints(world, camera), atol=1e-6)
        projected = Camera.from_meta(s.meta).project(s.pose3d[::step].astype(np.float64))
        assert np.abs(projected - s.pose2d[::step, :, :2]).max() < 0.01
        valid, activity = ts_labels(len(world))
        np.testing.assert_array_equal(s.frames["valid"][::step], valid.astype(bool))
        np.testing.assert_array_equal(s.frames["activity"][::step], activity)
        if step == 2:  # interpolated frames are never evaluated and carry the preceding activity
            assert not s.frames["valid"][1::2].any()
            np.testing.assert_array_equal(s.frames["activity"][1::2], activity[:-1])
        assert (s.meta["subject"], s.meta["split"]) == (name, "test")
        assert (s.meta["width"], s.meta["height"]) == ((2048, 2048) if name == "TS1" else (1920, 1080))
        assert s.meta["calibration"].endswith(("ts1-4cameras.calib", "ts5-6cameras.calib"))


def test_embedded_test_calibration_when_files_are_absent(samples, tmp_path):
    shutil.copytree(samples / "TS5", tmp_path / "TS5")
    [s] = mpi.MPIINF3DHPReader().read(tmp_path / "TS5" / "annot_data.mat")
    assert s.meta["calibration"].startswith("published ts5-6cameras.calib")
    np.testing.assert_allclose(s.meta["f"], ts_camera_of("TS5").f)


def test_resample_times_by_hand():
    i0, i1, w = resample_times(3, 25)
    np.testing.assert_array_equal(i0, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(i1, [1, 1, 2, 2, 2])
    np.testing.assert_allclose(w, [0, 0.5, 0, 0.5, 0])
    i0, _, w = resample_times(4, 50)
    np.testing.assert_array_equal(i0, np.arange(4))
    assert not w.any()


# -- bad input -----------------------------------------------------------------------------------------
def train_copy(samples: Path, tmp_path: Path, seq: int = 2) -> Path:
    folder = tmp_path / "S1" / f"Seq{seq}"
    shutil.copytree(samples / "S1" / f"Seq{seq}", folder)
    return folder / "annot.mat"


def test_v73_where_v5_expected(tmp_path):
    folder = tmp_path / "S1" / "Seq1"
    folder.mkdir(parents=True)
    write_v73(folder / "annot.mat", {"annot2": np.zeros((3, 56))})
    with pytest.raises(ValueError, match=f"{folder / 'annot.mat'}: is a MATLAB v7.3 file.*v5"):
        mpi.MPIINF3DHPReader().read(folder / "annot.mat")


def test_v5_where_v73_expected(tmp_path):
    folder = tmp_path / "TS2"
    folder.mkdir()
    scipy.io.savemat(folder / "annot_data.mat", {"valid_frame": np.ones((1, 3))})
    with pytest.raises(ValueError, match=f"{folder / 'annot_data.mat'}: is a MATLAB v5 file.*v7.3"):
        mpi.MPIINF3DHPReader().read(folder / "annot_data.mat")


def test_missing_camera(tmp_path):
    folder = tmp_path / "S1" / "Seq1"
    folder.mkdir(parents=True)
    cams = {i: c for i, c in studio_cameras().items() if i != 7}
    write_skeletool(folder / "camera.calibration", cams)
    write_annot_mat(folder / "annot.mat", cams, train_motion(1, 1)[0][:10])
    with pytest.raises(KeyError, match="camera 7 is not in 'cameras'"):
        mpi.MPIINF3DHPReader().read(folder / "annot.mat")
    assert len(mpi.MPIINF3DHPReader(cameras=(0, 13)).read(folder / "annot.mat")) == 2
    write_skeletool(folder / "camera.calibration", {i: c for i, c in cams.items() if i != 13})
    with pytest.raises(KeyError, match="no calibration for camera 13"):
        mpi.MPIINF3DHPReader(cameras=(13,)).read(folder / "annot.mat")


def test_mismatched_frame_counts(samples, tmp_path):
    path = train_copy(samples, tmp_path)
    mat = scipy.io.loadmat(path)
    mat["annot2"][2, 0] = mat["annot2"][2, 0][:-5]
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("_")})
    with pytest.raises(ValueError, match=f"{path}: camera 2 has 145 rows of annot2, 150 of univ_annot3"):
        mpi.MPIINF3DHPReader().read(path)
    folder = tmp_path / "TS3"
    folder.mkdir()
    write_v73(
        folder / "annot_data.mat",
        {
            "annot2": np.zeros((4, 1, 17, 2)),
            "univ_annot3": np.ones((5, 1, 17, 3)),
            "valid_frame": np.ones((4, 1)),
            "activity_annotation": np.ones((4, 1)),
        },
    )
    with pytest.raises(ValueError, match="annot2 has 4 frames, univ_annot3 5"):
        mpi.MPIINF3DHPReader().read(folder / "annot_data.mat")


def test_nan_rows_split_the_sequence_and_are_reported(samples, tmp_path, caplog):
    path = train_copy(samples, tmp_path)
    mat = scipy.io.loadmat(path)
    mat["annot3"][1, 0][10:13, 12] = np.nan  # camera 1, rows 10-12, pelvis x
    mat["annot3"][2, 0][10:13, 5] = np.nan  # camera 2: spine4 y, a joint the store does not keep
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("_")})
    with caplog.at_level(logging.WARNING, logger="ingest.mpi_inf_3dhp"):
        sequences = by_id(mpi.MPIINF3DHPReader(annot="annot3").read(path))
    assert "dropped 3 of 150 rows" in caplog.text and "S1_Seq2_cam_1" in caplog.text
    a, b = sequences["S1_Seq2_cam_1_part0"], sequences["S1_Seq2_cam_1_part1"]
    assert "S1_Seq2_cam_1" not in sequences and "S1_Seq2_cam_2" in sequences
    assert (a.meta["source_rows"], b.meta["source_rows"], a.meta["nan_rows"]) == ([0, 10], [13, 150], 3)
    expected = expected_camera_joints(train_motion(1, 2)[0], studio_cameras()[1])
    np.testing.assert_allclose(a.pose3d, expected[:10], atol=1e-6)
    np.testing.assert_allclose(b.pose3d, expected[13:], atol=1e-6)
    assert all(np.isfinite(s.pose3d).all() and np.isfinite(s.pose2d).all() for s in sequences.values())


def test_nan_rows_in_the_test_set_keep_labels_aligned(samples, tmp_path):
    (tmp_path / "TS1").mkdir()
    with h5py.File(samples / "TS1" / "annot_data.mat", "r") as fh:
        data = {k: fh[k][()] for k in fh}
    data["annot2"][20:22] = np.nan
    write_v73(tmp_path / "TS1" / "annot_data.mat", data)
    parts = mpi.MPIINF3DHPReader().read(tmp_path / "TS1" / "annot_data.mat")
    assert [p.meta["source_rows"] for p in parts] == [[0, 20], [22, len(data["annot2"])]]
    valid = data["valid_frame"].ravel() != 0
    np.testing.assert_array_equal(parts[1].frames["valid"][::2], valid[22:])
    with h5py.File(tmp_path / "TS1" / "annot_data.mat", "r+") as fh:
        fh["annot2"][...] = np.nan
    with pytest.raises(DroppedByRule, match="every row"):
        mpi.MPIINF3DHPReader().read(tmp_path / "TS1" / "annot_data.mat")


def test_rows_beyond_the_sequence_length_are_cut(samples, tmp_path, monkeypatch):
    path = train_copy(samples, tmp_path)
    monkeypatch.setitem(mpi.TRAIN_SEQUENCES, (1, 2), (50, 100))
    assert {len(s) for s in mpi.MPIINF3DHPReader().read(path)} == {100}


def test_bad_test_layout(tmp_path):
    (tmp_path / "TS4").mkdir()
    write_v73(
        tmp_path / "TS4" / "annot_data.mat",
        {
            "annot2": np.zeros((2, 17, 4)),
            "univ_annot3": np.zeros((4, 1, 17, 3)),
            "valid_frame": np.ones((4, 1)),
            "activity_annotation": np.ones((4, 1)),
        },
    )
    with pytest.raises(ValueError, match="annot2 has shape \\(2, 17, 4\\) in HDF5"):
        mpi.MPIINF3DHPReader().read(tmp_path / "TS4" / "annot_data.mat")


# -- options -------------------------------------------------------------------------------------------
def test_cli_options():
    parser = argparse.ArgumentParser()
    mpi.add_arguments(parser)
    reader = mpi.reader_from_args(parser.parse_args([]))
    assert (reader.cameras, reader.annot, reader.subjects) == ((0, 1, 2, 4, 5, 6, 7, 8), "univ_annot3", None)
    reader = mpi.reader_from_args(parser.parse_args(["--cameras", "all", "--annot", "annot3", "--subjects", "S1"]))
    assert (reader.cameras, reader.annot, reader.subjects) == (tuple(range(14)), "annot3", ("S1",))
    assert mpi.camera_set(["3", "0"]) == (3, 0)
    with pytest.raises(ValueError, match="0..13"):
        mpi.camera_set(["14"])
    with pytest.raises(ValueError, match="neither a set name"):
        mpi.camera_set("fisheye")


def test_sources_and_subjects(samples):
    names = [p.relative_to(samples).as_posix() for p in mpi.MPIINF3DHPReader().sources(samples)]
    assert names == ["S1/Seq1/annot.mat", "S1/Seq2/annot.mat", "TS1/annot_data.mat", "TS5/annot_data.mat"]
    assert len(mpi.MPIINF3DHPReader(subjects=("TS5",)).sources(samples.parent)) == 1
    with pytest.raises(FileNotFoundError, match="for S9"):
        mpi.MPIINF3DHPReader(subjects=("S9",)).sources(samples)


def test_sources_in_nested_release_folders(samples, tmp_path):
    shutil.copytree(samples / "S1", tmp_path / "train" / "S1")
    shutil.copytree(samples / "TS5", tmp_path / "mpi_inf_3dhp_test_set" / "mpi_inf_3dhp_test_set" / "TS5")
    reader = mpi.MPIINF3DHPReader()
    names = [p.relative_to(tmp_path).as_posix() for p in reader.sources(tmp_path)]
    assert names == [
        "mpi_inf_3dhp_test_set/mpi_inf_3dhp_test_set/TS5/annot_data.mat",
        "train/S1/Seq1/annot.mat",
        "train/S1/Seq2/annot.mat",
    ]
    assert [reader.part_name(tmp_path, tmp_path / n) for n in names] == ["TS5", "S1_Seq1", "S1_Seq2"]


# -- the Ray job ---------------------------------------------------------------------------------------
def test_ray_ingest_converts_reports_and_resumes(samples, tmp_path, ray_local):
    src = tmp_path / "src"
    shutil.copytree(samples, src)
    bad = src / "S2" / "Seq1"
    bad.mkdir(parents=True)
    write_v73(bad / "annot.mat", {"annot2": np.zeros((3, 56))})
    store_url = str(tmp_path / "store")
    summary = run_ingest(mpi.MPIINF3DHPReader(), src, store_url, progress=False)
    assert (summary.files, summary.converted, summary.sequences) == (5, 4, 18)
    assert [f["source"] for f in summary.failed] == [str(bad / "annot.mat")]
    assert "v7.3" in summary.failed[0]["error"]
    store = MotionStore.open(store_url)
    assert store.read_errors("mpi_inf_3dhp")[0]["source"] == str(bad / "annot.mat")
    view = store["mpi_inf_3dhp"]
    rows = sorted((m["split"], m["subject"], m["camera"]) for m in view.metas)
    assert rows[0] == ("test", "TS1", "cam_8") and rows[-1] == ("train", "S1", "cam_8") and len(rows) == 18
    ts1 = view["TS1_cam_8"]
    valid, activity = ts_labels(len(ts_motion("TS1")[0]))
    np.testing.assert_array_equal(ts1.frames["valid"][::2], valid.astype(bool))
    np.testing.assert_array_equal(ts1.frames["activity"][::2], activity)
    train = view["S1_Seq1_cam_0"]
    assert set(train.frames) == {"valid", "activity"} and train.frames["valid"].all()
    assert train.frames["activity"].dtype == ts1.frames["activity"].dtype
    expected = expected_camera_joints(train_motion(1, 1)[0], studio_cameras()[0])
    np.testing.assert_allclose(
        train.pose3d[::2], expected[:, :1] + UNIVERSAL_SCALE * (expected - expected[:, :1]), atol=1e-6
    )
    attrs = dict(store.open_part("mpi_inf_3dhp", "S1_Seq1").attrs)
    assert (attrs["annot"], attrs["cameras"]) == ("univ_annot3", [0, 1, 2, 4, 5, 6, 7, 8])
    again = run_ingest(mpi.MPIINF3DHPReader(), src, store_url, progress=False)
    assert (again.skipped, again.converted, len(again.failed)) == (4, 0, 1)


def test_foreign_file_is_named(tmp_path):
    folder = tmp_path / "S3" / "Seq1"
    folder.mkdir(parents=True)
    (folder / "annot.mat").write_bytes(b"\x89PNG not a mat file" * 20)
    with pytest.raises(ValueError, match=f"{folder / 'annot.mat'}: not a MATLAB file"):
        mpi.MPIINF3DHPReader().read(folder / "annot.mat")
