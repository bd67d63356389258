"""Evaluation protocols on a small generated motion store, with predictors whose errors are known."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from finetune_fakes import exact, lift, make_sequence, mean_pose_predictor, random_batch_norm_statistics

from finetune import windows as windows_module
from finetune.evaluate import (
    PretrainedLift,
    evaluate_3dhp,
    evaluate_h36m,
    format_3dhp_table,
    format_h36m_table,
    recalibrate_lift_batch_norm,
    write_json,
)
from finetune.model import Lifter
from finetune.windows import PerWindow, centred_windows, predict_clips, predict_sequence
from ingest.h36m import H36M_ACTIONS
from ingest.skeleton import H36M16, H36M17, H36M17_TO_16
from ingest.store import MotionStore
from pretrain.model import MPM, preset
from shards import codec
from shards.codec import normalize_2d
from shards.layout import Segment
from shards.writer import encode_segment

T = 9  # window length used by the tests


@pytest.fixture
def h36m_view(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [
        make_sequence(rng, "S9_Walking_1_a", "S9", "Walking", "test", 30),
        make_sequence(rng, "S9_Walking_2_b", "S9", "Walking", "test", 12, width=1000, height=1000),
        make_sequence(rng, "S9_Eating_0_a", "S9", "Eating", "test", 20),
        make_sequence(rng, "S11_Eating_0_a", "S11", "Eating", "test", 5, width=1000, height=1000),
        make_sequence(rng, "S1_Bogus_0_a", "S1", "Bogus", "train", 7),  # train split: never read
    ]
    store = MotionStore.open(str(tmp_path / "store"))
    store.write_part("h36m", "p0", seqs[:2])
    store.write_part("h36m", "p1", seqs[2:])
    return store["h36m"], seqs


def test_centred_windows_repeat_edges():
    x = np.arange(4)
    w = centred_windows(x, 5)
    np.testing.assert_array_equal(w[0], [0, 0, 0, 1, 2])
    np.testing.assert_array_equal(w[3], [1, 2, 3, 3, 3])
    assert centred_windows(np.zeros((6, 17, 2)), 3).shape == (6, 3, 17, 2)
    with pytest.raises(ValueError, match="odd"):
        centred_windows(x, 4)


def test_exact_predictor_scores_zero_and_shifted_one_does_not(h36m_view):
    view, _ = h36m_view
    result = evaluate_h36m(PerWindow(exact), view, T)
    assert set(result["actions"]) == {"Walking", "Eating"}
    for metric in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"):
        assert result["average"][metric] == pytest.approx(0.0, abs=1e-3)
    assert result["average"]["frames"] == 30 + 12 + 20 + 5
    shifted = evaluate_h36m(PerWindow(lambda w: exact(w, shift=1)), view, T)
    assert shifted["average"]["mpjpe"] > 50.0


def test_zero_predictor_matches_independent_average(h36m_view):
    """MPJPE of an all-zero prediction is the mean distance of each joint from the pelvis: frame-weighted
    within an action over subjects and cameras, then the plain mean over actions."""
    view, seqs = h36m_view
    result = evaluate_h36m(PerWindow(lambda w: torch.zeros(len(w), 17, 3)), view, T)
    per_action = {}
    for action in ("Walking", "Eating"):
        truth = np.concatenate([s.pose3d - s.pose3d[:, :1] for s in seqs if s.meta["action"] == action])
        per_action[action] = 1000 * np.linalg.norm(truth, axis=-1).mean()
        assert result["actions"][action]["mpjpe"] == pytest.approx(per_action[action], rel=1e-5)
    assert result["average"]["mpjpe"] == pytest.approx(np.mean(list(per_action.values())), rel=1e-5)
    s11 = seqs[3].pose3d - seqs[3].pose3d[:, :1]
    assert result["subjects"]["S11"]["average"]["mpjpe"] == pytest.approx(
        1000 * np.linalg.norm(s11, axis=-1).mean(), rel=1e-5
    )
    only = evaluate_h36m(PerWindow(lambda w: torch.zeros(len(w), 17, 3)), view, T, subjects=["S11"])
    assert list(only["subjects"]) == ["S11"] and list(only["actions"]) == ["Eating"]
    with pytest.raises(ValueError, match="cameras"):
        evaluate_h36m(PerWindow(exact), view, T, cameras=["60457274"])


def test_flip_augmentation_cancels_a_mirror_asymmetric_bias(h36m_view):
    view, _ = h36m_view
    biased = evaluate_h36m(PerWindow(lambda w: exact(w, bias=0.01)), view, T)
    # The root is set to 0, the other 16 joints are off by 10 mm.
    assert biased["average"]["mpjpe"] == pytest.approx(10.0 * 16 / 17, rel=1e-4)
    flipped = evaluate_h36m(PerWindow(lambda w: exact(w, bias=0.01)), view, T, flip=True)
    assert flipped["average"]["mpjpe"] == pytest.approx(0.0, abs=1e-3)


def test_sixteen_joint_model_sees_sixteen_joints(h36m_view):
    view, _ = h36m_view
    seen = []

    def predictor(w):
        seen.append(w.shape)
        return exact(w)

    result = evaluate_h36m(PerWindow(predictor), view, T, joint_set=H36M16)
    assert all(shape[2] == 16 for shape in seen)
    assert result["average"]["mpjpe"] == pytest.approx(0.0, abs=1e-3)
    assert len(H36M17_TO_16) == 16


def test_table_and_results_json(h36m_view, tmp_path):
    view, _ = h36m_view
    result = evaluate_h36m(PerWindow(lambda w: exact(w, bias=0.01)), view, T)
    table = format_h36m_table(result)
    assert "Dir." in table and "WalkT." in table and "Avg" in table
    all_row = [line for line in table.splitlines() if line.startswith("All")][0].split()
    assert len(all_row) == 1 + len(H36M_ACTIONS) + 1
    assert all_row[-1] == f"{10 * 16 / 17:.1f}" and all_row[1] == "-"  # no Directions sequence here
    write_json(tmp_path / "out" / "results.json", {"h36m": result})
    assert json.loads((tmp_path / "out" / "results.json").read_text())["h36m"]["average"]["frames"] == 67


def test_unknown_test_action_is_an_error(tmp_path):
    rng = np.random.default_rng(1)
    store = MotionStore.open(str(tmp_path / "store"))
    store.write_part("h36m", "p0", [make_sequence(rng, "S9_Dancing", "S9", "Dancing", "test", 4)])
    with pytest.raises(ValueError, match="S9_Dancing.*Dancing"):
        evaluate_h36m(PerWindow(exact), store["h36m"], T)


def test_3dhp_valid_frames_pck_auc(tmp_path):
    rng = np.random.default_rng(2)
    n = 16
    valid = np.arange(n) % 4 != 0
    activity = np.where(np.arange(n) < 8, 1, 6).astype(np.int32)
    seq = make_sequence(rng, "TS1", "TS1", "test", "test", n, frames={"valid": valid, "activity": activity})
    seq.pose3d[~valid, 5] += 0.5  # invalid frames carry wrong truth: including them would show
    store = MotionStore.open(str(tmp_path / "store"))
    store.write_part("mpi_inf_3dhp", "TS1", [seq])
    wrist = H36M17.index("left_wrist")

    def predictor(w):
        out = exact(w)
        out[:, wrist, 0] += 0.2  # 200 mm off on one of the 14 scored joints
        return out

    result = evaluate_3dhp(PerWindow(predictor), store["mpi_inf_3dhp"], T)
    overall = result["all"]
    assert overall["frames"] == valid.sum()
    assert overall["pck"] == pytest.approx(100 * 13 / 14)
    assert overall["auc"] == pytest.approx(100 * 13 * 30 / (14 * 31))
    assert overall["mpjpe"] == pytest.approx(200 / 17, rel=1e-4)
    assert set(result["activities"]) == {"Standing/Walking", "Sports"}
    assert result["activities"]["Sports"]["frames"] == valid[8:].sum()
    assert result["sequences"]["TS1"]["pck"] == pytest.approx(overall["pck"])
    assert "Sports" in format_3dhp_table(result)


def test_mean_pose_baseline(h36m_view, tmp_path):
    view, seqs = h36m_view
    train = seqs[4].pose3d - seqs[4].pose3d[:, :1]  # the only train sequence
    predict = mean_pose_predictor(view)
    out = predict.centre_from_features(torch.zeros(3, T, 17, 2))
    assert out.shape == (3, 17, 3)
    np.testing.assert_allclose(out[0].numpy(), train.mean(0), atol=1e-6)
    store = MotionStore.open(str(tmp_path / "test_only"))
    store.write_part("h36m", "p", [seqs[0]])
    with pytest.raises(ValueError, match="no train-split"):
        mean_pose_predictor(store["h36m"])


def test_2d_normalisation_matches_the_shard_writer():
    """Evaluation must feed the lifter the same 2D as training streams (shards.writer.encode_segment)."""
    rng = np.random.default_rng(5)
    seq = make_sequence(rng, "S9_Walking_1_c", "S9", "Walking", "test", 6, width=1000, height=1002)
    sample, _ = encode_segment(seq, Segment(0, 6, 6, 6), "h36m", "float32")
    streamed = np.load(io.BytesIO(sample["pose2d.npy"]))[..., :2]
    np.testing.assert_allclose(normalize_2d(seq.pose2d, 1000, 1002), streamed, atol=1e-6)


@pytest.mark.parametrize("n", [5, 9, 20, 27, 28])
def test_clips_predict_every_frame_once_from_its_own_input(n):
    """Sequence-to-sequence: consecutive clips of T frames, the last one ending on the last frame, a short
    sequence edge-padded; an identity predictor gives each frame back from its own input, in
    ceil(N / T) clips."""
    x = np.random.default_rng(n).normal(size=(n, 17, 2)).astype(np.float32)
    calls = []

    def identity(clips):
        calls.append(len(clips))
        return torch.cat([clips[..., :2], torch.zeros_like(clips[..., :1])], dim=-1)

    out = predict_clips(identity, x, 9, H36M17, batch_size=2)
    np.testing.assert_array_equal(out[..., :2], x)
    assert sum(calls) == -(-max(n, 9) // 9)


def test_seq2seq_protocol_scores_an_exact_sequence_predictor_zero(h36m_view):
    view, _ = h36m_view

    def exact_clips(clips):  # lift() of every frame of every clip, root-relative
        out = lift(clips[..., :2].numpy())
        return torch.from_numpy((out - out[..., :1, :]).astype(np.float32))

    result = evaluate_h36m(exact_clips, view, T, protocol="seq2seq", flip=True)
    assert result["protocol"] == "seq2seq" and result["average"]["frames"] == 30 + 12 + 20 + 5
    assert result["average"]["mpjpe"] == pytest.approx(0.0, abs=1e-3)
    lifter = Lifter(preset("tiny", frames=T), frames=T).eval()
    clip = torch.randn(3, T, 17, 2)
    torch.testing.assert_close(lifter.predict_clip(clip), lifter(clip)[1])


def test_lift_batch_norm_recalibration_is_the_plain_average_of_the_lift_path():
    """Precise BN: the 2D encoder's statistics become the exact mean / variance of its pre-activations over
    the given batches; the 3D path's modules keep theirs; weights never move."""
    torch.manual_seed(0)
    cfg = preset("tiny", frames=9)
    mpm = MPM(cfg)
    mpm.encoder_3d.bn.running_mean.fill_(0.3)
    weights = {k: v.clone() for k, v in mpm.state_dict().items() if "running" not in k and "tracked" not in k}
    batches = [{"pose2d": torch.randn(4, 9, 17, 3), "valid2d": torch.ones(4, 9, dtype=torch.bool)} for _ in range(3)]
    assert recalibrate_lift_batch_norm(mpm, batches) == 3
    assert not mpm.training
    rows = torch.cat([b["pose2d"][..., :2].reshape(36, -1) for b in batches])
    with torch.no_grad():
        pre = mpm.encoder_2d.fc(rows)
    torch.testing.assert_close(mpm.encoder_2d.bn.running_mean, pre.mean(0))
    # each batch's unbiased variance, averaged (equal batch sizes)
    var = torch.stack([p.var(0) for p in pre.split(36)]).mean(0)
    torch.testing.assert_close(mpm.encoder_2d.bn.running_var, var)
    assert torch.all(mpm.encoder_3d.bn.running_mean == 0.3) and mpm.encoder_2d.bn.momentum == 0.1
    for k, v in weights.items():
        torch.testing.assert_close(mpm.state_dict()[k], v)
    stats = {k: v.clone() for k, v in mpm.state_dict().items()}
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_lift_batch_norm(mpm, iter([]))
    for k, v in stats.items():  # nothing lost on the error
        torch.testing.assert_close(mpm.state_dict()[k], v)


def _plain_centre(window_predict, pose2d, frames, joint_set, flip):
    """The independent expectation: every 2D window cut first (edge padding), the whole network on each
    window, flip averaged: the centre-frame path before per-frame features were shared."""
    windows = torch.from_numpy(np.ascontiguousarray(centred_windows(pose2d, frames)))
    with torch.no_grad():
        pred = window_predict(windows)
        if flip:
            pred = (pred + codec.flip(window_predict(codec.flip(windows, joint_set)), joint_set)) / 2
    return pred.numpy()


@pytest.mark.parametrize(
    "size,frames,centre_head,flip",
    [
        *[("tiny", t, h, f) for t in (9, 27) for h in ("strided", "decoder") for f in (False, True)],
        ("mpm", 27, "strided", True),  # the released sizes (C 256, 8 heads, 4 shared layers)
        ("mpm", 27, "decoder", True),
    ],
)
def test_shared_frame_features_predict_as_the_plain_per_window_forward(size, frames, centre_head, flip):
    """predict_sequence (per-frame layers once per frame, windows of their features, the temporal part per
    window) equals forward()[0] on every edge-padded 2D window, for sequences shorter than, as long as and
    longer than the window, in batches that do and do not divide them."""
    torch.manual_seed(frames)
    lifter = Lifter(preset(size), frames=frames, centre_head=centre_head)
    random_batch_norm_statistics(lifter)
    lifter.eval()
    rng = np.random.default_rng(frames)
    for n, batch in ((3, None), (frames, 4), (40, 7)):
        x = np.concatenate([rng.normal(0, 0.5, (n, 17, 2)), rng.uniform(0, 1, (n, 17, 1))], -1).astype(np.float32)
        got = predict_sequence(lifter, x, frames, H36M17, flip=flip, batch_size=batch)
        expected = _plain_centre(lambda w: lifter(w)[0], x, frames, H36M17, flip)
        assert got.shape == (n, 17, 3)
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("frames", [9, 27])
def test_pretrained_lift_centres_are_its_lift(frames):
    """PretrainedLift as a centre predictor (per-frame features shared, the decoder for the centre query only)
    equals the pretraining network's lift of each window at its centre frame; 16 joints, with flip."""
    torch.manual_seed(0)
    mpm = MPM(preset("tiny", frames=frames, joints=16, decoder_layers=2))
    random_batch_norm_statistics(mpm)
    lift = PretrainedLift(mpm).eval()
    rng = np.random.default_rng(1)
    for n in (5, 30):
        x = rng.normal(0, 0.5, (n, 16, 2)).astype(np.float32)
        got = predict_sequence(lift, x, frames, H36M16, flip=True)
        expected = _plain_centre(lambda w: mpm.lift(w)[:, frames // 2], x, frames, H36M16, True)
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)
        with torch.no_grad():
            w = torch.from_numpy(np.ascontiguousarray(centred_windows(x, frames)))
            torch.testing.assert_close(lift.predict_centre(w), mpm.lift(w)[:, frames // 2])
    with pytest.raises(RuntimeError, match="eval"):
        predict_sequence(lift.train(), x, frames, H36M16)


def test_centre_batches_follow_the_feature_memory(monkeypatch):
    """By default a call takes as many windows as keep T x D feature values within WINDOW_FEATURE_BYTES; the
    per-frame stage runs once per frame of the sequence (and of its mirror)."""
    lifter = Lifter(preset("tiny"), frames=9).eval()
    monkeypatch.setattr(windows_module, "WINDOW_FEATURE_BYTES", 5 * 9 * 32 * 4)
    assert windows_module.centre_batch_size(9, 32 * 4) == 5
    calls, frames_seen = [], []
    monkeypatch.setattr(lifter, "centre_from_features", lambda f: calls.append(len(f)) or torch.zeros(len(f), 17, 3))
    frame_features = lifter.frame_features
    monkeypatch.setattr(lifter, "frame_features", lambda x: frames_seen.append(len(x)) or frame_features(x))
    predict_sequence(lifter, np.zeros((23, 17, 2), np.float32), 9, H36M17, flip=True)
    assert calls == [5, 5] * 4 + [3, 3] and frames_seen == [23, 23]
    with pytest.raises(RuntimeError, match="evaluation mode"):
        predict_sequence(Lifter(preset("tiny"), frames=9).train(), np.zeros((4, 17, 2), np.float32), 9, H36M17)
