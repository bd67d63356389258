"""Lifting in the wild (finetune.infer): gap filling, resampling and normalisation, root placement, and the
command on detector files (ingest.keypoints reads them; experiments.detector_files writes them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.infer import fill_gaps, lift_segment, place_root
from finetune.windows import PerWindow
from ingest.skeleton import H36M17
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

    joint_set, frames = H36M17, 5

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
    expected = expected - expected[:, :1]
    np.testing.assert_allclose(out[..., :2], expected, atol=1e-5)
    assert out.shape == (n, 17, 3)


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
