"""Masking ratios and structure, and the pretraining objective."""

from __future__ import annotations

import pytest
import torch

from pretrain.masking import MaskConfig, make_masks
from pretrain.model import MPM, preset
from pretrain.objective import ObjectiveConfig, masked_mpjpe, mean_bone_lengths, pretrain_loss, weak_perspective_error


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (MaskConfig(), 1 - 0.4 * 12 / 17),  # MPM's optimum: 71.8%
        (MaskConfig(mode="tube", joints_masked=3, frame_ratio=0.3), 1 - 0.7 * 14 / 17),
        (MaskConfig(mode="temporal", frame_ratio=0.5), 0.5),
    ],
)
def test_mask_ratio_over_many_samples(cfg, expected):
    frames, joints = 243, 17
    m = make_masks(4000, frames, joints, cfg, torch.Generator().manual_seed(0))
    ratio = m.masked().float().mean().item()
    # int(243 * 0.6) = 145 frames: the settings' ratio up to the frame rounding
    assert abs(ratio - expected) < 0.01
    assert abs(ratio - cfg.expected_ratio(frames, joints)) < 0.002
    assert cfg.expected_ratio(243, 17) == pytest.approx(expected, abs=0.01)


def test_mask_structure():
    gen = torch.Generator().manual_seed(1)
    m = make_masks(64, 27, 17, MaskConfig(), gen)
    assert (m.joints.sum(-1) == 5).all()  # 5 joints in every frame
    assert (m.frames.sum(-1) == int(27 * 0.6)).all()
    assert m.visible.shape == (64, 27 - 16)
    assert (m.visible.diff(dim=1) > 0).all()
    assert not m.frames.gather(1, m.visible).any()  # visible = complement of the frame mask
    # frames and joint choices vary between samples and frames
    assert len({tuple(r.tolist()) for r in m.visible}) > 60
    assert not (m.joints[:, 1:] == m.joints[:, :1]).all()
    tube = make_masks(64, 27, 17, MaskConfig(mode="tube"), gen)
    assert (tube.joints == tube.joints[:, :1]).all() and (tube.joints.sum(-1) == 5).all()
    assert len({tuple(r[0].tolist()) for r in tube.joints}) > 30
    temporal = make_masks(8, 27, 17, MaskConfig(mode="temporal"), gen)
    assert not temporal.joints.any()


def test_masks_are_reproducible_and_validated():
    a = make_masks(4, 27, 16, MaskConfig(), torch.Generator().manual_seed(5))
    b = make_masks(4, 27, 16, MaskConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a.joints, b.joints) and torch.equal(a.visible, b.visible)
    with pytest.raises(ValueError, match="mask.mode"):
        MaskConfig(mode="random")
    with pytest.raises(ValueError, match="frame_ratio"):
        MaskConfig(frame_ratio=1.0)
    with pytest.raises(ValueError, match="joints_masked"):
        make_masks(1, 27, 5, MaskConfig(joints_masked=5), torch.Generator())


def test_masked_mpjpe_by_hand():
    pred = torch.zeros(1, 2, 2, 3)
    target = torch.zeros(1, 2, 2, 3)
    target[0, 0, 0] = torch.tensor([3.0, 4.0, 0.0])  # distance 5
    target[0, 1, 1] = torch.tensor([0.0, 0.0, 7.0])  # distance 7, in an invalid frame
    valid = torch.tensor([[True, False]])
    assert masked_mpjpe(pred, target, valid).item() == pytest.approx(5.0 / 2)
    assert masked_mpjpe(pred, target, torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(12.0 / 4)
    assert masked_mpjpe(pred, target, torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


def _batch(b, cfg):
    torch.manual_seed(3)
    return {
        "pose2d": torch.randn(b, cfg.frames, cfg.joints, 3),
        "pose3d": torch.randn(b, cfg.frames, cfg.joints, 3),
        "valid2d": torch.ones(b, cfg.frames, dtype=torch.bool),
        "valid3d": torch.ones(b, cfg.frames, dtype=torch.bool),
        "dataset": torch.zeros(b, dtype=torch.int64),
    }


@pytest.mark.parametrize("tasks", ["both", "split"])
def test_loss_combines_the_two_tasks(tasks):
    cfg = preset("tiny", joints=16)
    model = MPM(cfg).eval()
    batch = _batch(4, cfg)
    obj = ObjectiveConfig(lambda_2d=2.0, lambda_3d=3.0, tasks=tasks)
    loss, parts = pretrain_loss(model, batch, MaskConfig(), obj, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(2.0 * parts["loss_2d"].item() + 3.0 * parts["loss_3d"].item(), rel=1e-6)
    # the 2D term ignores the confidence channel; the 3D term reads pose3d: recompute with the same masks
    gen = torch.Generator().manual_seed(0)
    n2, n3 = (4, 4) if tasks == "both" else (2, 2)
    m2 = make_masks(n2, cfg.frames, 16, MaskConfig(), gen)
    m3 = make_masks(n3, cfg.frames, 16, MaskConfig(), gen)
    x2, x3 = batch["pose2d"][:n2, ..., :2], batch["pose3d"][4 - n3 :]
    rec2, rec3 = model(x2, m2, x3, m3)
    ref2 = (rec2 - x2).norm(dim=-1).mean()
    ref3 = (rec3 - x3).norm(dim=-1).mean()
    assert parts["loss_2d"].item() == pytest.approx(ref2.item(), rel=1e-5)
    assert parts["loss_3d"].item() == pytest.approx(ref3.item(), rel=1e-5)


def test_invalid_frames_are_hidden_and_not_scored():
    cfg = preset("tiny", joints=16)
    model = MPM(cfg).eval()
    batch = _batch(2, cfg)
    batch["valid3d"][:, :10] = False
    loss_a, parts_a = pretrain_loss(model, batch, MaskConfig(), ObjectiveConfig(), torch.Generator().manual_seed(0))
    batch["pose3d"][:, :10] = 1e3  # garbage where invalid: neither input nor target may see it
    loss_b, parts_b = pretrain_loss(model, batch, MaskConfig(), ObjectiveConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(parts_a["loss_3d"], parts_b["loss_3d"]) and torch.equal(loss_a, loss_b)


@pytest.mark.parametrize("lift_input", ["complete", "masked"])
def test_lift_term_scores_paired_windows_only(lift_input):
    """The lifting term is the 3D decoder's output for the 2D view against the window's 3D, averaged over the
    paired windows only; unpaired 3D can change nothing in it."""
    cfg = preset("tiny", joints=16)
    model = MPM(cfg).eval()
    batch = _batch(4, cfg)
    batch["paired"] = torch.tensor([True, False, True, False])
    obj = ObjectiveConfig(lambda_lift=0.5, lift_input=lift_input)
    loss, parts = pretrain_loss(model, batch, MaskConfig(), obj, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(
        2.0 * parts["loss_2d"].item() + 3.0 * parts["loss_3d"].item() + 0.5 * parts["loss_lift"].item(), rel=1e-6
    )
    x2, x3 = batch["pose2d"][..., :2], batch["pose3d"]
    if lift_input == "complete":
        lifted = model.lift(x2)  # every frame visible, no joint masked: what finetuning feeds the encoder
    else:
        gen = torch.Generator().manual_seed(0)
        m2 = make_masks(4, cfg.frames, 16, MaskConfig(), gen)
        lifted = model(x2, m2, None, None, lift=True)[2]
    ref = (lifted - x3).norm(dim=-1).mean(dim=(1, 2))[[0, 2]].mean()
    assert parts["loss_lift"].item() == pytest.approx(ref.item(), rel=1e-5)
    batch["pose3d"][[1, 3]] += 5.0  # the unpaired windows' 3D still feeds L3D, never the lifting term
    _, moved = pretrain_loss(model, batch, MaskConfig(), obj, torch.Generator().manual_seed(0))
    assert torch.equal(moved["loss_lift"], parts["loss_lift"]) and moved["loss_3d"] != parts["loss_3d"]


def test_a_task_takes_only_the_samples_it_has():
    """Training mode, so batch norm uses the batch's statistics: the 3D loss of the labelled windows is the
    same whether or not the batch also holds windows without 3D (an unlabelled subject's) and whatever their
    2D is, because those windows never enter the 3D pass and the 2D pass is a pass of its own."""
    cfg = preset("tiny", joints=16, dropout=0.0)
    model = MPM(cfg).train()
    fixed = MaskConfig(mode="temporal", frame_ratio=0.0)  # no random draw: the same masks in every call
    full = _batch(4, cfg)
    full["valid3d"][2:] = False
    loss_full, parts_full = pretrain_loss(model, full, fixed, ObjectiveConfig(), torch.Generator().manual_seed(0))
    labelled = {k: v[:2] for k, v in full.items()}
    _, parts_labelled = pretrain_loss(model, labelled, fixed, ObjectiveConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(parts_full["loss_3d"], parts_labelled["loss_3d"])
    full["pose2d"][2:] *= 10.0
    _, parts_moved = pretrain_loss(model, full, fixed, ObjectiveConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(parts_moved["loss_3d"], parts_full["loss_3d"])
    assert parts_moved["loss_2d"] != parts_full["loss_2d"]


def test_weak_perspective_error_against_a_brute_force_scale():
    """The closed-form scale gives the error a scalar search over the scale finds (scipy), frame by frame;
    an exact weak-perspective view of the lift scores 0 whatever the lift's unit, a flat zero lift scores
    the mean root-relative 2D distance."""
    from scipy.optimize import minimize_scalar

    gen = torch.Generator().manual_seed(3)
    lift = torch.randn(2, 3, 17, 3, generator=gen, dtype=torch.float64) * 0.3
    pose2d = torch.randn(2, 3, 17, 2, generator=gen, dtype=torch.float64) * 0.2
    valid = torch.ones(2, 3, dtype=torch.bool)
    u = (pose2d - pose2d[..., :1, :]).numpy()
    xy = (lift[..., :2] - lift[..., :1, :2]).numpy()
    best = [
        minimize_scalar(
            lambda s, b=b, t=t: float(((s * xy[b, t] - u[b, t]) ** 2).sum()), bounds=(0.0, 100.0), method="bounded"
        ).x
        for b in range(2)
        for t in range(3)
    ]
    ref = (
        sum(
            float(((s * xy[i // 3, i % 3] - u[i // 3, i % 3]) ** 2).sum(-1).__pow__(0.5).mean())
            for i, s in enumerate(best)
        )
        / 6
    )
    assert weak_perspective_error(lift, pose2d, valid).item() == pytest.approx(ref, rel=1e-4)
    view = 0.43 * lift[..., :2] + torch.tensor([0.1, -0.3], dtype=torch.float64)
    assert weak_perspective_error(lift * 1000.0, view, valid).item() == pytest.approx(0.0, abs=1e-9)
    flat = torch.zeros_like(lift)
    assert weak_perspective_error(flat, pose2d, valid).item() == pytest.approx(
        float(((u**2).sum(-1) ** 0.5).mean()), rel=1e-9
    )
    valid[1] = False  # invalid frames do not count
    assert weak_perspective_error(lift, pose2d, valid).item() == pytest.approx(
        weak_perspective_error(lift[:1], pose2d[:1], valid[:1]).item(), rel=1e-12
    )


def test_mean_bone_lengths_by_hand():
    """A 16-joint pose stretched along x: each bone's length is |x offset| from its parent, averaged."""
    from ingest.skeleton import H36M16

    pose = torch.zeros(1, 2, 16, 3)
    pose[0, :, :, 0] = torch.arange(16.0)  # joint j at x = j
    pose[0, 1] *= 2.0
    expected = torch.tensor([abs(j - p) * 1.5 for j, p in enumerate(H36M16.parents) if p >= 0])
    torch.testing.assert_close(mean_bone_lengths(pose, torch.ones(1, 2, dtype=torch.bool)), expected)
    only_first = torch.tensor([[True, False]])
    torch.testing.assert_close(mean_bone_lengths(pose, only_first), expected / 1.5)


def test_unpaired_terms_score_the_unpaired_lifts():
    """``loss_reproject`` is the weak-perspective error of the unpaired windows' complete-2D lifts only, and
    ``loss_bone`` the gap between the unpaired and the paired lifts' mean bone lengths; both enter the loss
    with their weights, and the paired windows' 3D (the lifting term's target) changes neither."""
    cfg = preset("tiny", joints=16)
    model = MPM(cfg).eval()
    batch = _batch(4, cfg)
    batch["paired"] = torch.tensor([True, False, True, False])
    batch["valid3d"][[1, 3]] = False  # unlabelled windows: 2D only
    obj = ObjectiveConfig(lambda_lift=0.5, lambda_reproject=2.0, lambda_bone=3.0)
    loss, parts = pretrain_loss(model, batch, MaskConfig(), obj, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(
        2.0 * parts["loss_2d"].item()
        + 3.0 * parts["loss_3d"].item()
        + 0.5 * parts["loss_lift"].item()
        + 2.0 * parts["loss_reproject"].item()
        + 3.0 * parts["loss_bone"].item(),
        rel=1e-6,
    )
    x2 = batch["pose2d"][..., :2]
    lifted = model.lift(x2)
    every = torch.ones(2, cfg.frames, dtype=torch.bool)
    ref_rep = weak_perspective_error(lifted[[1, 3]], x2[[1, 3]], every)
    ref_bone = (mean_bone_lengths(lifted[[1, 3]], every) - mean_bone_lengths(lifted[[0, 2]], every)).abs().mean()
    assert parts["loss_reproject"].item() == pytest.approx(ref_rep.item(), rel=1e-5)
    assert parts["loss_bone"].item() == pytest.approx(ref_bone.item(), rel=1e-5)
    batch["pose3d"][[0, 2]] += 1.0
    _, moved = pretrain_loss(model, batch, MaskConfig(), obj, torch.Generator().manual_seed(0))
    assert torch.equal(moved["loss_reproject"], parts["loss_reproject"])
    assert torch.equal(moved["loss_bone"], parts["loss_bone"]) and moved["loss_lift"] != parts["loss_lift"]
