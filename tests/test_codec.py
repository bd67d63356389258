"""The sample codec (shards/codec.py): hand-computed values, inverses and round trips, the pinhole camera as an
independent check of the 2.5D normalisation, and one sample convention for training and evaluation: a
window streamed from the shards equals the evaluation input cut from the store, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shards_fakes import CLIP, FOCAL, HEIGHT, WIDTH

from finetune.windows import centred_windows
from ingest.skeleton import H36M16, H36M17
from shards import codec
from shards.stream import LoaderOptions, make_loader


def test_normalize_2d_by_hand_and_back():
    corners = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0], [250.0, 0.0]])
    expected = np.array([[-1.0, -1.002], [1.0, 1.002], [0.0, 0.0], [-0.5, -1.002]])
    np.testing.assert_allclose(codec.normalize_2d(corners, 1000, 1002), expected, atol=1e-12)
    pixels = np.random.default_rng(0).uniform(0, 1000, (5, 17, 3))
    back = codec.denormalize_2d(codec.normalize_2d(pixels, 1000, 1002), 1000, 1002)
    np.testing.assert_allclose(back, pixels[..., :2], atol=1e-9)


def test_image_frame_3d_matches_the_pinhole_projection():
    """A joint at the pelvis depth Z, offset (dx, dy), projects dx * f / Z pixels from the pelvis: its 2.5D
    x, y equal the normalised 2D offset (the scale f_x / Z * 2 / w), and denormalize_3d inverts it."""
    rng = np.random.default_rng(1)
    root = np.array([[0.3, -0.2, 5.0], [0.0, 0.1, 3.5]])
    rel = rng.uniform(-0.8, 0.8, (2, 17, 3))
    rel[:, 0] = 0.0
    rel[..., 2] = 0.0  # same depth as the pelvis: the pinhole projection is exactly linear
    c = np.array([WIDTH / 2, HEIGHT / 2])

    def project(p):
        return p[..., :2] / p[..., 2:] * FOCAL + c

    offset_2d = codec.normalize_2d(project(root[:, None] + rel), WIDTH, HEIGHT) - codec.normalize_2d(
        project(root[:, None]), WIDTH, HEIGHT
    )
    norm = codec.normalize_3d(rel, root[:, 2], FOCAL, WIDTH)
    np.testing.assert_allclose(norm[..., :2], offset_2d, atol=1e-12)
    assert norm[0, 1, 0] == pytest.approx(rel[0, 1, 0] * FOCAL / 5.0 * 2 / WIDTH)
    np.testing.assert_allclose(codec.denormalize_3d(norm, root[:, 2], FOCAL, WIDTH), rel, atol=1e-12)
    assert not codec.normalize_3d(rel, np.array([0.0, -1.0]), FOCAL, WIDTH).any()  # no depth: zero


def test_flip_mirrors_the_image_and_is_its_own_inverse():
    """Mirroring the image (pixel x -> w - x) and normalising equals normalising and flipping, for numpy and
    torch alike; the right hip takes the left hip's place; flipping twice gives the input back."""
    rng = np.random.default_rng(2)
    pixels = rng.uniform(0, WIDTH, (4, 17, 2))
    mirrored = pixels.copy()
    mirrored[..., 0] = WIDTH - mirrored[..., 0]
    mirrored = mirrored[:, H36M17.flip_permutation()]
    flipped = codec.flip(codec.normalize_2d(pixels, WIDTH, HEIGHT), H36M17)
    np.testing.assert_allclose(flipped, codec.normalize_2d(mirrored, WIDTH, HEIGHT), atol=1e-12)
    x = rng.normal(size=(3, 5, 16, 3))
    once = codec.flip(x, H36M16)
    assert once[..., H36M16.index("right_hip"), 0].tolist() == (-x[..., H36M16.index("left_hip"), 0]).tolist()
    assert np.array_equal(codec.flip(once, H36M16), x)
    assert np.array_equal(codec.flip(torch.from_numpy(x), H36M16).numpy(), once)


def test_encode_zeroes_invalid_frames_and_keeps_the_root():
    rng = np.random.default_rng(3)
    p3 = rng.normal(size=(6, 17, 3)) + np.array([0, 0, 5.0])
    p3[2, 4, 1] = np.nan
    valid = np.array([1, 1, 1, 1, 0, 1], bool)
    rel, root, bad = codec.encode_3d(p3, valid)
    assert bad.tolist() == [False, False, True, False, True, False]
    assert not rel[bad].any() and not root[bad].any() and not rel[:, 0].any()
    np.testing.assert_allclose((rel + root[:, None])[~bad], p3[~bad], atol=1e-12)
    p2 = np.concatenate([rng.uniform(0, 1000, (6, 17, 2)), np.full((6, 17, 1), 0.7)], axis=-1)
    p2[0, 0, 0] = np.inf
    enc, bad2 = codec.encode_2d(p2, 1000, 1002, valid)
    assert bad2.tolist() == [True, False, False, False, True, False] and not enc[bad2].any()
    np.testing.assert_allclose(enc[~bad2, :, 2], 0.7)
    with pytest.raises(ValueError, match="must be positive"):
        codec.encode_2d(p2, 0, 1002)


@pytest.mark.parametrize("joints", [17, 16])
def test_training_window_equals_evaluation_window(built, joints):
    """One sample convention for both stages: a window streamed for training (flip on) and the evaluation
    input cut from the store for the same frames (centred on the window's middle frame) are bit-identical,
    for the 2D input and the root-relative 3D target, or equal to their codec.flip; invalid frames
    (MPI-INF-3DHP's mask) included; both outcomes of the flip occur."""
    shards, sequences = built
    joint_set = codec.joint_set(joints)
    loader = make_loader(
        shards,
        LoaderOptions(
            datasets=["h36m", "mpi_inf_3dhp"],
            clip_len=CLIP,
            joints=joints,
            batch_size=16,
            resampled=False,
            with_keys=True,
            flip=True,
        ),
    )
    outcomes, invalid = set(), 0
    for batch in loader:
        for b, (sid, start) in enumerate(zip(batch["sequence"], batch["start"].tolist(), strict=True)):
            seq = sequences[sid]
            if start + CLIP > len(seq):
                continue  # a padded short sequence: training replicates the last frame, evaluation centres
            x = centred_windows(codec.sequence_input_2d(seq, joint_set), CLIP)[start + CLIP // 2]
            y = codec.sequence_truth_3d(seq, joint_set)[0][start : start + CLIP].astype(np.float32)
            streamed = batch["pose2d"][b, ..., :2].numpy(), batch["pose3d"][b].numpy()
            if np.array_equal(streamed[0], x) and np.array_equal(streamed[1], y):
                outcomes.add("same")
            else:
                assert np.array_equal(streamed[0], codec.flip(x, joint_set))
                assert np.array_equal(streamed[1], codec.flip(y, joint_set))
                outcomes.add("flipped")
            invalid += int((~batch["valid2d"][b]).sum())
    assert outcomes == {"same", "flipped"} and invalid > 0


def test_short_sequence_is_padded_by_edge_replication(built):
    shards, sequences = built
    short = {
        sid for sid, s in sequences.items() if len(s) < CLIP and s.meta["split"] == "train" and sid.startswith("h36m")
    }
    loader = make_loader(
        shards, LoaderOptions(datasets=["h36m"], clip_len=CLIP, batch_size=64, resampled=False, with_keys=True)
    )
    seen = 0
    for batch in loader:
        for b, sid in enumerate(batch["sequence"]):
            if sid in short:
                seq = sequences[sid]
                expected = codec.pad_edge(codec.sequence_input_2d(seq, H36M17), 0, CLIP - len(seq))
                assert np.array_equal(batch["pose2d"][b, ..., :2].numpy(), expected)
                assert batch["valid2d"][b].tolist() == [True] * len(seq) + [False] * (CLIP - len(seq))
                seen += 1
    assert seen == len(short) > 0
