"""The VideoPose3D comparison (experiments/videopose3d.py) without running run.py: its output parser on a sample
in run.py's print format, the Martinez h5 -> data_3d_h36m.npz conversion on generated files, the budget
arithmetic, the posemill side's reading of a finished run, and the one-line errors. The ground-truth 2D made
with VideoPose3D's own code needs a checkout: set VIDEOPOSE3D to one (skipped otherwise)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from experiments import videopose3d as vp
from ingest.camera import h36m_published_cameras
from ingest.samples.h36m import write_take
from ingest.samples.motion import walking_motion
from ingest.untrusted import load_npz

KEPT = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]  # Human3.6M-32 -> 17, VideoPose3D's order

# run.py's output, line for line in its print format (its args Namespace abridged), with a renamed action
# spelling (TakingPhoto) and numpy float32 / float64 values as print() shows them.
SAMPLE = """\
Namespace(dataset='h36m', keypoints='gt', subjects_train='S1,S5,S6,S7,S8', subjects_test='S11', epochs=1)
Loading dataset...
Preparing data...
Loading 2D detections...
INFO: Receptive field: 27 frames
INFO: Trainable parameter count: 8555571
INFO: Testing on 225676 frames
INFO: Training on 12036 frames
** Note: reported losses are averaged over all frames and test-time augmentation is not used here.
** The final evaluation will be carried out after the last training epoch.
[1] time 1.88 lr 0.001000 3d_train 834.830128
Saving checkpoint to checkpoint/epoch_1.bin
Evaluating...
----Directions----
Test time augmentation: True
Protocol #1 Error (MPJPE): 200.02420991659164 mm
Protocol #2 Error (P-MPJPE): 172.96841 mm
Protocol #3 Error (N-MPJPE): 189.97637182474136 mm
Velocity Error (MPJVE): 2.7173555 mm
----------
----TakingPhoto----
Test time augmentation: True
Protocol #1 Error (MPJPE): 292.9147936435366 mm
Protocol #2 Error (P-MPJPE): 227.67128 mm
Protocol #3 Error (N-MPJPE): 280.1 mm
Velocity Error (MPJVE): 3.5 mm
----------
Protocol #1   (MPJPE) action-wise average: 246.5 mm
Protocol #2 (P-MPJPE) action-wise average: 200.3 mm
Protocol #3 (N-MPJPE) action-wise average: 235.0 mm
Velocity      (MPJVE) action-wise average: 3.11 mm
"""


def test_parser_reads_every_action_and_the_averages():
    parsed = vp.parse_evaluation(SAMPLE)
    assert set(parsed["actions"]) == {"Directions", "Photo"}
    assert parsed["actions"]["Directions"] == {
        "mpjpe": 200.02420991659164,
        "p_mpjpe": 172.96841,
        "n_mpjpe": 189.97637182474136,
        "mpjve": 2.7173555,
    }
    assert parsed["actions"]["Photo"]["mpjpe"] == pytest.approx(292.9147936435366)
    assert parsed["printed_average"] == {"mpjpe": 246.5, "p_mpjpe": 200.3, "n_mpjpe": 235.0, "mpjve": 3.11}


def test_parser_takes_the_last_evaluation_and_refuses_an_incomplete_one():
    first = SAMPLE.replace("200.02420991659164", "999.0")
    assert vp.parse_evaluation(first + SAMPLE)["actions"]["Directions"]["mpjpe"] == pytest.approx(200.0242099)
    cut = SAMPLE[: SAMPLE.index("Protocol #1   (MPJPE) action-wise")]
    with pytest.raises(ValueError, match="no complete run.py evaluation"):
        vp.parse_evaluation(cut)


def test_run_output_markers_time_the_training():
    lines = [(float(i), line) for i, line in enumerate(SAMPLE.splitlines())]
    start, end = vp.marker_time(lines, vp.MARKERS["start"]), vp.marker_time(lines, vp.MARKERS["evaluating"])
    assert (start, end) == (9.0, 12.0)
    assert vp.marker_time(lines, vp.MARKERS["epoch"]) == 10.0
    assert vp.marker_value(lines, vp.MARKERS["train_frames"]) == 12036
    assert vp.marker_value(lines, vp.MARKERS["test_frames"]) == 225676


@pytest.fixture
def martinez(tmp_path):
    """Generated takes in the Martinez layout: S1 and S11 (with the S11 'Directions' take the conversion
    drops), and an S9 folder whose only file is not HDF5 at all: reading it would fail the test."""
    root = tmp_path / "h36m"
    motions = {}
    for subject, takes in {"S1": ["Walking 1", "Eating"], "S11": ["Directions", "Directions 1"]}.items():
        for take in takes:
            motions[subject, take] = walking_motion(60 + 7 * len(motions), seed=len(motions))
            write_take(root / subject / "MyPoses" / "3D_positions" / f"{take}.h5", motions[subject, take])
    s9 = root / "S9" / "MyPoses" / "3D_positions"
    s9.mkdir(parents=True)
    (s9 / "Walking.h5").write_bytes(b"held out")
    return root, motions


def test_3d_npz_has_videopose3d_layout(martinez, tmp_path):
    root, motions = martinez
    positions, notes = vp.read_martinez_3d(root)
    assert set(positions) == {"S1", "S11"}  # never S9; only the subjects present
    assert set(positions["S1"]) == {"Walking 1", "Eating"} and set(positions["S11"]) == {"Directions 1"}
    assert any("S5: no" in n for n in notes) and any("S1: 2 takes" in n for n in notes)
    vp.write_npz(tmp_path / "data" / "data_3d_h36m.npz", positions_3d=positions)
    loaded = load_npz(tmp_path / "data" / "data_3d_h36m.npz")["positions_3d"].item()
    for subject, actions in loaded.items():
        for action, array in actions.items():
            assert array.dtype == np.float32 and array.shape == (len(motions[subject, action]), 32, 3)
            np.testing.assert_allclose(array, motions[subject, action], atol=1e-6)  # metres again
    assert vp.sequence_lengths(tmp_path / "data" / "data_3d_h36m.npz") == {
        "S1": {"Walking 1": 60, "Eating": 67},
        "S11": {"Directions 1": 81},
    }
    assert not list((tmp_path / "data").glob(".*tmp*"))  # written atomically, nothing left over


def test_inputs_that_exist_are_kept(martinez, tmp_path):
    root, _ = martinez
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    for name in ("data_3d_h36m.npz", "data_2d_h36m_gt.npz"):
        (data / name).write_bytes(b"kept")
    said = []
    assert vp.prepare_inputs(root, tmp_path / "no-checkout", tmp_path / "work", said.append) == []
    assert [(data / n).read_bytes() for n in ("data_3d_h36m.npz", "data_2d_h36m_gt.npz")] == [b"kept"] * 2
    assert all("exists, kept" in s for s in said)


def test_martinez_file_of_wrong_shape_is_named(tmp_path):
    path = tmp_path / "S1" / "MyPoses" / "3D_positions" / "Walking.h5"
    path.parent.mkdir(parents=True)
    import h5py

    with h5py.File(path, "w") as fh:
        fh.create_dataset("3D_positions", data=np.zeros((51, 10)))
    with pytest.raises(ValueError, match=r"Walking.h5.*\(51, 10\)"):
        vp.read_martinez_3d(tmp_path)


def test_budget_arithmetic():
    assert [vp.parse_budget(t) for t in ("20m", "1200s", "1200", "1.5h", " 90 ")] == [1200, 1200, 1200, 5400, 90]
    for bad in ("0", "-5m", "20 minutes", "m", ""):
        with pytest.raises(ValueError, match="--budget"):
            vp.parse_budget(bad)
    # under one epoch: one epoch of a subset; 200 windows/s x 1200 s = 240,000 windows of 2 x 1,559,752
    subset, epochs = vp.fit_budget(1200, 200, 1_559_752)
    assert epochs == 1 and subset == pytest.approx(240_000 / (2 * 1_559_752))
    # over one epoch: whole epochs of a subset that fills the budget (5,000 windows, 2,000 an epoch)
    assert vp.fit_budget(50, 100, 1000) == (pytest.approx(5000 / 6000), 3)
    assert vp.fit_budget(40, 100, 1000) == (1.0, 2)
    assert vp.fit_budget(50, 100, 1000, augment=False) == (1.0, 5)
    with pytest.raises(ValueError, match="less than one batch"):
        vp.fit_budget(5, 100, 1000)
    # run.py's subset: int(round(n * subset)) frames of each sequence (Python's round: half to even)
    assert vp.subset_frames([10, 15, 3], 0.5) == 5 + 8 + 2
    assert vp.subset_frames([10, 15, 3], 1.0) == 28
    args = vp.run_py_args(["S1", "S5"], "3,3,3", 0.125, 1, "checkpoint", 1)
    assert args[args.index("--subset") + 1] == "0.125" and args[args.index("-str") + 1] == "S1,S5"
    assert "--subset" not in vp.run_py_args(["S1"], "3,3,3", 1.0, 2, "checkpoint", 1)
    assert args[args.index("-ste") + 1] == "S11" and "--no-eval" in args


def write_posemill_run(folder: Path, seconds: list[list[float]], train_seconds: float) -> None:
    """A finished finetune run: results.json with S11's table and metrics.jsonl with one list of logged
    ``seconds`` per invocation."""
    folder.mkdir(parents=True)
    actions = {"Directions": {"mpjpe": 50.0, "p_mpjpe": 40.0, "frames": 10}, "Photo": {"mpjpe": 70.0, "p_mpjpe": 50.0}}
    s11 = {"actions": actions, "average": {"mpjpe": 60.0, "p_mpjpe": 45.0, "frames": 20}}
    results = {
        "flip": True,
        "train": {"train_seconds": train_seconds, "steps": 100, "config": {"eval": {"cameras": None}}},
        "h36m": {"subjects": {"S11": s11}, "average": s11["average"], "actions": actions},
    }
    (folder / "results.json").write_text(json.dumps(results))
    step = 0
    with open(folder / "metrics.jsonl", "w") as fh:
        for run in seconds:
            for s in run:
                step += 1
                fh.write(json.dumps({"step": step, "loss": 1.0, "seconds": s}) + "\n")


def test_posemill_run_is_read_with_its_resumed_time(tmp_path):
    write_posemill_run(tmp_path / "once", [[1.0, 50.0, 100.0]], 100.5)
    once = vp.read_posemill(tmp_path / "once")
    assert (once["train_s"], once["mpjpe"], once["p_mpjpe"]) == (100.5, 60.0, 45.0)
    assert once["actions"] == {
        "Directions": {"mpjpe": 50.0, "p_mpjpe": 40.0},
        "Photo": {"mpjpe": 70.0, "p_mpjpe": 50.0},
    }
    write_posemill_run(tmp_path / "resumed", [[1.0, 300.0], [2.0, 100.0]], 100.5)
    assert vp.read_posemill(tmp_path / "resumed")["train_s"] == 400.5
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no results.json"):
        vp.read_posemill(tmp_path / "empty")


def test_mistakes_are_one_line(tmp_path, martinez, capsys):
    root, _ = martinez
    checkout = tmp_path / "vp3d"
    (checkout / "common").mkdir(parents=True)
    for name in ("run.py", "common/h36m_dataset.py", "common/camera.py"):
        (checkout / name).write_text("")
    write_posemill_run(tmp_path / "run", [[1.0]], 1.0)
    base = [
        str(checkout),
        "--data",
        str(root),
        "--work",
        str(tmp_path / "work"),
        "--posemill-run",
        str(tmp_path / "run"),
    ]
    cases = {
        "no run.py": [str(tmp_path), *base[1:]],
        "no S11/MyPoses": [str(checkout), "--data", str(tmp_path), *base[3:]],
        "--budget": [*base, "--budget", "soon"],
        "--arc": [*base, "--arc", "3,x"],
        "no results.json": [*base[:-1], str(tmp_path)],
    }
    for fragment, argv in cases.items():
        with pytest.raises(SystemExit) as exc:
            vp.main(argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.count("\n") == 0 and fragment in err, (fragment, err)
        assert err.startswith("python -m experiments.videopose3d: error: ")


@pytest.fixture
def checkout():
    path = os.environ.get("VIDEOPOSE3D")
    if not path:
        pytest.skip("VIDEOPOSE3D is not set: the 2D projection test needs a facebookresearch/VideoPose3D checkout")
    if not (Path(path) / "common" / "h36m_dataset.py").is_file():
        pytest.skip(f"VIDEOPOSE3D={path} is not a VideoPose3D checkout")
    return Path(path)


def test_gt_2d_is_videopose3d_projection_of_the_takes(martinez, tmp_path, checkout):
    """The 2D file from the checkout's own code: its layout and metadata, and pixels that agree with this
    project's camera model on the same takes (the same published calibration)."""
    root, motions = martinez
    vp.prepare_inputs(root, checkout, tmp_path / "work", lambda _: None)
    arrays = load_npz(tmp_path / "work" / "data" / "data_2d_h36m_gt.npz")
    meta = arrays["metadata"].item()
    assert meta["num_joints"] == 17
    assert [list(map(int, side)) for side in meta["keypoints_symmetry"]] == [
        [4, 5, 6, 11, 12, 13],
        [1, 2, 3, 14, 15, 16],
    ]
    positions_2d = arrays["positions_2d"].item()
    assert set(positions_2d) == {"S1", "S11"} and set(positions_2d["S11"]) == {"Directions 1"}
    for (subject, action), world in motions.items():
        if (subject, action) == ("S11", "Directions"):
            continue
        views = positions_2d[subject][action]
        assert len(views) == 4
        for cam, view in zip(h36m_published_cameras()[subject], views, strict=True):
            assert view.dtype == np.float32 and view.shape == (len(world), 17, 2)
            np.testing.assert_allclose(view, cam.project(cam.world_to_camera(world[:, KEPT])), atol=0.01)


def test_posemill_recipe_runs_the_make_h36m_commands(martinez, tmp_path):
    root, _ = martinez
    calls = []

    def fake(cmd, ok=(0,)):
        calls.append((cmd[2:4], ok, cmd))

    args = vp.parse_args(["vp3d", "--data", str(root), "--posemill-set", "train.max_steps=5"])
    out = vp.run_posemill(args, tmp_path / "pm", fake)
    assert out == tmp_path / "pm" / "run"
    assert [c[0] for c in calls] == [["ingest", "h36m"], ["shards", "build"], ["finetune", "--config"]]
    ingest, shards, finetune = (c[2] for c in calls)
    assert calls[0][1] == (0, 1)  # some files failed: reported, not fatal (as make h36m)
    assert ingest[ingest.index("--subjects") + 1 :] == ["S1", "S11"]  # the subjects present, never S9
    assert shards[shards.index("--clip-len") + 1] == "27"
    assert finetune[finetune.index("--config") + 1] == "h36m" and "--resume" in finetune
    assert "train.max_steps=5" in finetune and "eval.subjects=[S11]" in finetune
