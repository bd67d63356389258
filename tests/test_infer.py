"""Lifting in the wild (finetune.infer): gap filling, resampling and normalisation, root placement, and the
command on detector files (ingest.keypoints reads them; experiments.detector_files writes them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.detector_files import write_alphapose, write_coco
from finetune import infer, render
from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import save_lifter
from finetune.convert import UNITS
from finetune.infer import fill_gaps, lift_person, lift_segment, place_root
from finetune.model import Lifter
from finetune.windows import PerWindow
from ingest.skeleton import H36M16, H36M17
from pretrain import backbones
from pretrain.model import preset
from shards import codec


def _track(frames: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(100, 900, (frames, 17, 2))
    return np.concatenate([xy, np.ones((frames, 17, 1))], axis=-1)


def test_fill_gaps_interpolates_a_missing_joint_in_time_and_marks_it():
    track = _track()
    track[4, 3, 2] = 0.1  # right ankle below the confidence cut in frame 4
    track[5, 3] = np.nan  # and not detected at all in frame 5
    filled = fill_gaps(track, min_confidence=0.3)
    assert filled.segments == [(0, 12)]
    for t in (4, 5):  # on the line from frame 3 to frame 6, by hand
        expected = track[3, 3, :2] + (t - 3) / 3 * (track[6, 3, :2] - track[3, 3, :2])
        np.testing.assert_allclose(filled.pose2d[t, 3], expected)
    assert filled.interpolated.sum() == 2 and filled.interpolated[[4, 5], 3].all()
    keep = ~filled.interpolated
    np.testing.assert_array_equal(filled.pose2d[keep], track[..., :2][keep])


def test_fill_gaps_holds_the_ends_and_splits_at_long_absences():
    track = _track(30)
    track[0, 10, 2] = 0.0  # head missing in the first frame: held from frame 1
    track[10:20] = np.nan  # the person is gone for 10 frames
    track[25:27] = np.nan  # and for 2
    filled = fill_gaps(track, max_gap=5)
    assert filled.segments == [(0, 10), (20, 30)]
    np.testing.assert_array_equal(filled.pose2d[0, 10], track[1, 10, :2])
    assert np.isnan(filled.pose2d[10:20]).all()
    assert filled.interpolated[25:27].all() and not filled.interpolated[10:20].any()
    np.testing.assert_allclose(filled.pose2d[25], track[24, :, :2] + (track[27, :, :2] - track[24, :, :2]) / 3)
    assert fill_gaps(track, max_gap=10).segments == [(0, 30)]


def test_fill_gaps_names_a_joint_never_detected():
    track = _track()
    track[:, 13, 2] = 0.05
    with pytest.raises(ValueError, match="left_wrist.*frames 0..11"):
        fill_gaps(track)
    with pytest.raises(ValueError, match="no frame"):
        fill_gaps(np.full((5, 17, 3), np.nan))


class _EchoLifter(PerWindow):
    """The centre frame's normalised 2D as its 3D (z = 0): what goes into the network comes back out."""

    joint_set, frames, protocol, in_features = H36M17, 5, "centre", 2

    def __init__(self):
        super().__init__(lambda w: torch.cat([w[:, 2, :, :2], torch.zeros_like(w[:, 2, :, :1])], -1))


@pytest.mark.parametrize("fps", [50.0, 25.0, 30.0])
def test_lift_segment_feeds_the_training_normalisation_at_50_fps_and_returns_the_input_frames(fps):
    n = 31  # 30 input intervals: a whole number of 50 fps frames at each rate, so both grids end together
    start, velocity = np.random.default_rng(1).uniform(200, 800, (2, 17, 2))
    pose2d = start + np.arange(n)[:, None, None] / fps * velocity / 5  # linear in time: exact under resampling
    width, height = 1000.0, 1002.0
    out = lift_segment(_EchoLifter(), pose2d, (width, height), fps, flip=False)
    expected = codec.normalize_2d(pose2d, width, height)
    expected[:, 0] = 0.0
    np.testing.assert_allclose(out[..., :2], expected, atol=1e-5)
    assert out.shape == (n, 17, 3)


def test_lift_segment_runs_a_sequence_backbone_on_its_clips_with_the_confidence():
    """A DSTformer lifter (sequence to sequence, x, y and confidence): a 50 fps segment of exactly one clip is
    lifted by one call of the network on the normalised 2D with the confidence as third channel (the root
    then set to the origin), and the confidence reaches the network."""
    torch.manual_seed(0)
    lifter = BackboneLifter("dstformer", backbones.build("dstformer", "lite", frames=9, channels=16, layers=1, heads=2))
    lifter.eval()
    rng = np.random.default_rng(3)
    pose2d, confidence = rng.uniform(100, 900, (9, 17, 2)), rng.uniform(0.2, 1.0, (9, 17))
    out = lift_segment(lifter, pose2d, (1000.0, 1000.0), 50.0, flip=False, confidence=confidence)
    x = np.concatenate([codec.normalize_2d(pose2d, 1000.0, 1000.0), confidence[..., None]], axis=-1)
    with torch.no_grad():
        expected = lifter.backbone(torch.from_numpy(x[None]).float())[0].numpy()
    expected[:, 0] = 0.0
    np.testing.assert_allclose(out, expected, atol=1e-5)
    lowered = lift_segment(lifter, pose2d, (1000.0, 1000.0), 50.0, flip=False, confidence=confidence * 0.5)
    assert np.abs(lowered - out).max() > 1e-4


def test_lift_segment_runs_a_single_frame_backbone_frame_by_frame():
    """SimpleBaseline3D (one frame, centre protocol): each output frame is the network on that frame alone."""
    torch.manual_seed(0)
    lifter = BackboneLifter("simplebaseline", backbones.build("simplebaseline", joints=17, channels=32)).eval()
    pose2d = np.random.default_rng(4).uniform(100, 900, (6, 17, 2))
    out = lift_segment(lifter, pose2d, (1000.0, 1000.0), 50.0, flip=False)
    x = torch.from_numpy(codec.normalize_2d(pose2d, 1000.0, 1000.0)).float()
    with torch.no_grad():
        expected = torch.cat([lifter.backbone(frame[None, None]) for frame in x])[:, 0].numpy()
    expected[:, 0] = 0.0
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_place_root_recovers_the_translation_of_a_pinhole_projection():
    rng = np.random.default_rng(2)
    rel = rng.normal(0, 0.3, (6, 17, 3))
    rel -= rel[:, :1]
    root = np.column_stack([rng.uniform(-1, 1, 6), rng.uniform(-0.5, 0.5, 6), rng.uniform(3, 7, 6)])
    fx, fy, cx, cy = 1145.0, 1144.0, 512.5, 515.4  # a Human3.6M camera's intrinsics
    absolute = rel + root[:, None]
    xy = np.stack([fx * absolute[..., 0] / absolute[..., 2] + cx, fy * absolute[..., 1] / absolute[..., 2] + cy], -1)
    weights = np.ones((6, 17))
    weights[:, 5] = 0.0
    xy[:, 5] += 300.0  # a wrong joint with no weight does not move the answer
    np.testing.assert_allclose(place_root(rel, xy, weights, np.array([fx, fy, cx, cy])), root, atol=1e-9)
    weights[3, 1:] = 0.0
    assert np.isnan(place_root(rel, xy, weights, np.array([fx, fy, cx, cy]))[3]).all()


@pytest.fixture
def random_lifter(tmp_path):
    """A random tiny 16-joint lifter on disk: enough to run the command (its 3D means nothing)."""
    return save_lifter(tmp_path / "lifter.pt", Lifter(preset("tiny", joints=16), frames=9).eval())


def test_command_writes_metres_per_input_frame_with_the_joint_names(tmp_path, random_lifter):
    kp = _track(40)
    kp[20:32] = np.nan  # a long absence: no 3D there
    write_alphapose(tmp_path / "alphapose-results.json", kp, halpe=True)
    written = infer.main(
        [str(tmp_path / "alphapose-results.json"), "--checkpoint", str(random_lifter), "--out", str(tmp_path / "out"),
         "--image-size", "1000", "1000", "--fps", "25"]
    )  # fmt: skip
    pose3d = np.load(written["0"])
    doc = json.loads((tmp_path / "out" / "0.json").read_text())
    assert pose3d.shape == (40, 16, 3) and pose3d.dtype == np.float32
    assert doc["units"] == "metres" and doc["joints"] == list(H36M16.joints) and doc["fps"] == 25.0
    assert (doc["format"], doc["input_joint_set"], doc["segments"]) == ("alphapose", "halpe26", [[0, 20], [32, 40]])
    lifted = np.array(doc["lifted"])
    assert lifted.sum() == 28 and np.isnan(pose3d[~lifted]).all() and np.isfinite(pose3d[lifted]).all()
    np.testing.assert_allclose(np.array(doc["pose3d"][0]), pose3d[0], atol=6e-5)  # 0.1 mm rounding
    assert (pose3d[lifted, 0] == 0).all()  # root-relative


@pytest.mark.parametrize(
    "content, flags, message",
    [
        ("not json {", [], "json"),
        ('[{"image_id": 0, "category_id": 1, "keypoints": [1, 2, 1], "score": 1}]', [], "keypoints"),
        (None, [], "--image-size"),
        (None, ["--image-size", "100", "100", "--person", "7"], "no person"),
    ],
)
def test_command_mistakes_are_one_line_naming_the_file(tmp_path, random_lifter, capsys, content, flags, message):
    path = tmp_path / "keypoints.json"
    if content is None:
        write_coco(path, _track(5), (100, 100), results=True)
    else:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        infer.main([str(path), "--checkpoint", str(random_lifter), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert str(path) in err and message.lower() in err.lower()


def test_a_lifter_that_predicts_other_units_than_metres_is_refused(tmp_path, capsys):
    # the units finetune.convert records for a MotionBERT DSTformer
    units = {"output_units": UNITS["dstformer"]}
    lifter = save_lifter(tmp_path / "mb.pt", Lifter(preset("tiny", joints=16), frames=9).eval(), units)
    write_coco(tmp_path / "keypoints.json", _track(5), (100, 100), results=True)
    with pytest.raises(SystemExit) as exit_:
        infer.main(
            [str(tmp_path / "keypoints.json"), "--checkpoint", str(lifter), "--out", str(tmp_path / "out"),
             "--image-size", "100", "100"]
        )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert f"{lifter}: this lifter predicts MotionBERT's normalised camera units" in err and "not metres" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("encoder", ["ffmpeg", "pillow"])
def test_render_writes_every_input_frame_and_a_still(tmp_path, monkeypatch, encoder):
    if encoder == "pillow":
        monkeypatch.setattr(render, "ffmpeg_path", lambda: None)
    elif render.ffmpeg_path() is None:
        pytest.skip("no ffmpeg (pip install posemill[video])")
    result = lift_person(_EchoLifter(), _track(12), (1000.0, 1000.0), 25.0)
    args = (result.filled.pose2d, result.filled.interpolated, result.pose3d, H36M17, (1000.0, 1000.0), 25.0)
    written = render.render_lift(tmp_path / "0", *args, truth=result.pose3d)
    assert [p.name for p in written] == [f"0.{'gif' if encoder == 'pillow' else 'mp4'}", "0.png"]
    if encoder == "pillow":
        with Image.open(tmp_path / "0.gif") as gif:
            assert gif.n_frames == 12
    else:
        import imageio_ffmpeg

        assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "0.mp4"))[0] == 12
    with Image.open(tmp_path / "0.png") as still:
        assert still.size[0] > 300


def test_render_draws_the_video_under_the_2d_and_names_an_unreadable_one(tmp_path):
    if render.ffmpeg_path() is None:
        pytest.skip("no ffmpeg (pip install posemill[video])")
    result = lift_person(_EchoLifter(), _track(6), (320.0, 240.0), 25.0)
    args = (result.filled.pose2d, result.filled.interpolated, result.pose3d, H36M17, (320.0, 240.0), 25.0)
    video, _ = render.render_lift(tmp_path / "first", *args)  # any video will do as the background
    frames = list(render.video_frames(video))
    assert len(frames) == 6 and frames[0].dtype == np.uint8 and frames[0].ndim == 3
    render.render_lift(tmp_path / "over", *args, video=video)
    with Image.open(tmp_path / "first.png") as plain, Image.open(tmp_path / "over.png") as over:
        assert np.asarray(over).std() > np.asarray(plain).std()  # the frame fills the white 2D panel
    (tmp_path / "bad.mp4").write_text("not a video")
    with pytest.raises(OSError, match="bad.mp4"):
        render.render_lift(tmp_path / "x", *args, video=tmp_path / "bad.mp4")
