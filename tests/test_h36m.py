"""Human3.6M ingest: generated native files, bad files, resumption, VideoPose3D layout, real data."""

import json

import h5py
import numpy as np
import pytest
from invariants import bone_lengths

from ingest.__main__ import main as ingest_main
from ingest.camera import h36m_published_cameras
from ingest.h36m import H36MReader
from ingest.job import run_ingest
from ingest.samples.h36m import write_cameras, write_take
from ingest.samples.motion import walking_motion
from ingest.skeleton import H36M17
from ingest.store import MotionStore

KEPT = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]


def raw_camera_frame(cameras_h5, subject_n, cam_m, world_mm):
    """Independent computation from the file's raw numbers: X_cam = R.T @ (X - T) / 1000."""
    with h5py.File(cameras_h5) as fh:
        g = fh[f"subject{subject_n}/camera{cam_m}"]
        R, T = g["R"][:], g["T"][:].ravel()
    return (world_mm - T) @ R / 1000.0  # row-vector form of R.T @ (X - T)


@pytest.fixture
def small_h36m(tmp_path):
    root = tmp_path / "h36m"
    motions = {}
    for subject, takes in {"S1": ["Walking 1", "Eating"], "S11": ["Directions 1"]}.items():
        for t, take in enumerate(takes):
            motions[subject, take] = walking_motion(120 + 10 * t, seed=len(motions))
            write_take(root / subject / "MyPoses" / "3D_positions" / f"{take}.h5", motions[subject, take])
    write_cameras(root / "cameras.h5", ("S1", "S11"))
    return root, motions


def test_generated_files_convert_exactly(small_h36m, tmp_path, ray_local):
    root, motions = small_h36m
    summary = run_ingest(H36MReader(), root, str(tmp_path / "store"), progress=False)
    assert (summary.converted, summary.sequences, summary.failed) == (3, 12, [])
    view = MotionStore.open(str(tmp_path / "store"))["h36m"]
    assert len(view) == 12
    for (subject, take), world_m in motions.items():
        action, _, k = take.partition(" ")
        for m, cam in enumerate(h36m_published_cameras()[subject], start=1):
            seq = view[f"{subject}_{action}_{int(k or 0)}_{cam.id}"]
            expected = raw_camera_frame(root / "cameras.h5", subject[1:], m, world_m[:, KEPT] * 1000)
            np.testing.assert_allclose(seq.pose3d, expected, atol=1e-5)
            np.testing.assert_allclose(seq.pose2d[..., :2], cam.project(seq.pose3d), atol=1e-3)
            assert (seq.pose2d[..., 2] == 1).all()
            assert seq.meta["split"] == ("train" if subject == "S1" else "test")
            assert (seq.meta["fps"], seq.meta["camera"], seq.meta["action"]) == (50.0, cam.id, action)
            assert (seq.meta["width"], seq.meta["height"]) == (cam.width, cam.height)
            bones = bone_lengths(seq.pose3d.astype(np.float64), H36M17)
            assert np.ptp(bones, axis=0).max() < 1e-5  # rigid bones survive the camera transform


def test_bad_files_are_reported_and_the_rest_converts(small_h36m, tmp_path, ray_local, capsys):
    root, _ = small_h36m
    folder = root / "S1" / "MyPoses" / "3D_positions"
    good = (folder / "Walking 1.h5").read_bytes()
    (folder / "Truncated.h5").write_bytes(good[: len(good) // 2])
    with h5py.File(folder / "WrongShape.h5", "w") as fh:
        fh["3D_positions"] = np.zeros((51, 10))
    store = tmp_path / "store"
    code = ingest_main(["h36m", str(root), "--store", str(store), "--no-progress"])
    assert code == 1
    errors = {
        json.loads(line)["source"].rsplit("/", 1)[1]: json.loads(line)["error"]
        for line in (store / "h36m" / "errors.jsonl").read_text().splitlines()
    }
    assert sorted(errors) == ["Truncated.h5", "WrongShape.h5"]
    assert "Truncated.h5: cannot read HDF5 file" in errors["Truncated.h5"]
    assert "has shape (51, 10), expected (96, N)" in errors["WrongShape.h5"]
    assert len(MotionStore.open(str(store))["h36m"]) == 12  # the three good takes, 4 cameras each
    assert "2 of 5 files failed" in capsys.readouterr().err


def test_rerun_skips_done_parts_and_redoes_interrupted_ones(small_h36m, tmp_path, ray_local):
    root, _ = small_h36m
    store_url = str(tmp_path / "store")
    run_ingest(H36MReader(), root, store_url, progress=False)
    parts = tmp_path / "store" / "h36m" / "parts"
    # Simulate an interruption: one part never finished (its temporary copy is left behind).
    mtime = (parts / "S1_Walking_1" / "zarr.json").stat().st_mtime_ns
    half = tmp_path / "store" / "h36m" / "tmp" / "S1_Eating.0badc0de"
    (parts / "S1_Eating").rename(half)
    summary = run_ingest(H36MReader(), root, store_url, progress=False)
    assert (summary.skipped, summary.converted) == (2, 1)
    assert not half.exists() and (parts / "S1_Eating" / "zarr.json").exists()
    assert (parts / "S1_Walking_1" / "zarr.json").stat().st_mtime_ns == mtime  # untouched
    assert len(MotionStore.open(store_url)["h36m"]) == 12
    summary = run_ingest(H36MReader(), root, store_url, progress=False, overwrite=True)
    assert summary.converted == 3


def test_known_corrupt_take_is_dropped_by_rule(tmp_path, ray_local):
    root = tmp_path / "h36m"
    write_take(root / "S11" / "MyPoses" / "3D_positions" / "Directions.h5", walking_motion(60))
    write_take(root / "S11" / "MyPoses" / "3D_positions" / "Directions 1.h5", walking_motion(60, seed=1))
    summary = run_ingest(H36MReader(), root, str(tmp_path / "store"), progress=False)
    assert summary.failed == [] and len(summary.dropped) == 1
    assert "damaged" in summary.dropped[0]["reason"]
    assert {m["take"] for m in MotionStore.open(str(tmp_path / "store"))["h36m"].metas} == {1}


def test_videopose3d_layout_matches_martinez_layout(small_h36m, tmp_path, ray_local):
    root, motions = small_h36m
    vp3d = tmp_path / "vp3d"
    vp3d.mkdir()
    positions = {}
    for (subject, take), world in motions.items():
        positions.setdefault(subject, {})[take] = world.astype(np.float32)
    np.savez(vp3d / "data_3d_h36m.npz", positions_3d=positions)
    # Detections: the GT projection shifted by 2 px, with a score, 3 frames longer than the mocap.
    cams = h36m_published_cameras()
    detections = {
        s: {
            t: [
                np.concatenate(
                    [
                        np.pad(
                            c.project(c.world_to_camera(np.pad(w[:, KEPT], ((0, 3), (0, 0), (0, 0)), mode="edge"))) + 2,
                            ((0, 0), (0, 0), (0, 1)),
                            constant_values=0.9,
                        )
                    ]
                )
                for c in cams[s]
            ]
            for t, w in d.items()
        }
        for s, d in positions.items()
    }
    np.savez(
        vp3d / "data_2d_h36m_test.npz",
        positions_2d=detections,
        metadata={"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [[4, 5, 6], [1, 2, 3]]},
    )
    run_ingest(H36MReader(), root, str(tmp_path / "a"), progress=False)
    run_ingest(H36MReader(detections=vp3d / "data_2d_h36m_test.npz"), vp3d, str(tmp_path / "b"), progress=False)
    a, b = MotionStore.open(str(tmp_path / "a"))["h36m"], MotionStore.open(str(tmp_path / "b"))["h36m"]
    assert set(a.ids) == set(b.ids)
    for seq_id in a.ids:
        np.testing.assert_allclose(b[seq_id].pose3d, a[seq_id].pose3d, atol=1e-5)
        np.testing.assert_allclose(b[seq_id].pose2d[..., :2], a[seq_id].pose2d[..., :2] + 2, atol=1e-2)
        np.testing.assert_allclose(b[seq_id].pose2d[..., 2], 0.9, atol=1e-6)
        assert b[seq_id].meta["pose2d_source"] == "test"


# -- real data -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_store(real_data, tmp_path_factory, ray_local):
    store = tmp_path_factory.mktemp("real") / "store"
    summary = run_ingest(H36MReader(subjects=("S1", "S11")), real_data / "h36m", str(store), progress=False)
    return summary, MotionStore.open(str(store))["h36m"]


@pytest.mark.real_data
def test_real_data_converts_s1_and_s11(real_store):
    summary, view = real_store
    assert summary.failed == []
    assert [d["source"].endswith("S11/MyPoses/3D_positions/Directions.h5") for d in summary.dropped] == [True]
    assert {m["subject"] for m in view.metas} == {"S1", "S11"}
    assert len(view) == 4 * (30 + 29)


@pytest.mark.real_data
def test_real_data_against_independent_computation(real_store, real_data):
    _, view = real_store
    cameras_h5 = real_data / "h36m" / "cameras.h5"
    outside = total = 0
    for meta in view.metas:
        seq = view[meta["id"]]
        raw = h5py.File(meta["source"])["3D_positions"][:].T.reshape(-1, 32, 3)[:, KEPT]
        cam_m = ["54138969", "55011271", "58860488", "60457274"].index(meta["camera"]) + 1
        expected = raw_camera_frame(cameras_h5, meta["subject"][1:], cam_m, raw)
        np.testing.assert_allclose(seq.pose3d, expected, atol=2e-5)
        assert 2.0 < seq.pose3d[..., 2].min() and seq.pose3d[..., 2].max() < 8.0
        u, v = seq.pose2d[..., 0], seq.pose2d[..., 1]
        outside += int(np.sum((u < 0) | (v < 0) | (u >= meta["width"]) | (v >= meta["height"])))
        total += u.size
    assert outside / total < 1e-4  # ~0.002% of joints leave the frame where the subject does


@pytest.mark.real_data
def test_real_bone_lengths_constant_per_subject(real_store):
    _, view = real_store
    for subject in ("S1", "S11"):
        bones = np.concatenate(
            [bone_lengths(view[m["id"]].pose3d.astype(np.float64)) for m in view.metas if m["subject"] == subject]
        )
        assert np.ptp(bones, axis=0).max() < 1e-3  # metres: one skeleton per subject


def test_cli_on_a_folder_without_the_dataset_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        ingest_main(["h36m", str(tmp_path / "empty"), "--store", str(tmp_path / "store")])
    assert exit_info.value.code == 2
    assert "no Human3.6M files" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_samples_refuse_a_folder_they_did_not_write(tmp_path, capsys):
    """``ingest samples`` over a real data root would replace its cameras.h5 and takes: refused, nothing
    written; its own earlier output (or an empty folder) is written again."""
    root = tmp_path / "data"
    (root / "h36m").mkdir(parents=True)
    (root / "h36m" / "cameras.h5").write_bytes(b"real calibration")
    with pytest.raises(SystemExit) as exit_info:
        ingest_main(["samples", str(root), "--datasets", "h36m"])
    assert exit_info.value.code == 2
    assert "not empty and not written by 'ingest samples'" in capsys.readouterr().err
    assert (root / "h36m" / "cameras.h5").read_bytes() == b"real calibration"
    assert sorted(p.name for p in root.rglob("*")) == ["cameras.h5", "h36m"]
    out = tmp_path / "samples"
    assert ingest_main(["samples", str(out), "--datasets", "h36m"]) == 0
    first = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert ingest_main(["samples", str(out), "--datasets", "h36m"]) == 0  # its own folder: rewritten
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == first and (out / "h36m" / "cameras.h5").is_file()
