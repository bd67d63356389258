"""The lifting network: shapes, the strided schedule, parameter count by hand, pretrained loading,
freezing, and the loss."""

from __future__ import annotations

import pytest
import torch
from finetune_fakes import random_batch_norm_statistics

from finetune.model import STRIDES, Lifter, flop_counter, lifting_loss, strided_length
from pretrain.model import MPM, preset


def tiny(**overrides):
    return preset("tiny", **overrides)  # 32 channels, 64 hidden, 2 layers, 4 heads, 27 frames


def test_released_schedules_reduce_to_one_frame():
    for frames, strides in STRIDES.items():
        assert strided_length(frames, strides) == 1, frames
    with pytest.raises(ValueError, match="not 1"):
        Lifter(tiny(frames=27), strides=(3, 3))
    with pytest.raises(ValueError, match="no stride schedule"):
        Lifter(tiny(frames=25))
    with pytest.raises(ValueError, match="must be in"):
        Lifter(tiny(frames=9), frames=27)


def test_shorter_window_than_the_pretrained_table():
    cfg = tiny()
    mpm, lifter = MPM(cfg).eval(), Lifter(cfg, frames=9).eval()
    lifter.load_pretrained(mpm.state_dict())
    x = torch.randn(2, 9, 17, 2)
    assert lifter(x)[0].shape == (2, 17, 3)
    feats = lifter.shared(lifter.encoder_2d(x.reshape(18, -1)).view(2, 9, -1))
    torch.testing.assert_close(feats, mpm.encode(x))


def test_shapes_and_strided_parameter_count():
    cfg = tiny()
    model = Lifter(cfg).eval()
    centre, seq = model(torch.randn(5, 27, 17, 3))
    assert centre.shape == (5, 17, 3) and seq.shape == (5, 27, 17, 3)
    c, h = cfg.channels, cfg.hidden
    per_layer = 4 * (c * c + c) + 4 * c + (c * h + h) + (3 * h * c + c)  # attention, 2 norms, 2 convs
    expected = 3 * per_layer + 3 * cfg.frames * c  # three layers for 27 frames, three positional tables
    assert sum(p.numel() for p in model.reduce.parameters()) == expected
    with pytest.raises(ValueError, match="expects pose2d"):
        model(torch.randn(2, 9, 17, 2))


def test_243_frames_full_size_forward():
    model = Lifter(preset("mpm", joints=16, layers=1)).eval()
    centre, _ = model(torch.randn(1, 243, 16, 2))
    assert centre.shape == (1, 16, 3)


def test_pretrained_weights_give_the_same_features():
    cfg = tiny(joints=16)
    mpm, lifter = MPM(cfg).eval(), Lifter(cfg).eval()
    loaded = lifter.load_pretrained(mpm.state_dict())
    assert any(k.startswith("shared.temporal") for k in loaded) and "mask_token_2d" in loaded
    assert any(k.startswith("seq_head.stack") for k in loaded) and "dec_pos_emb" in loaded
    x = torch.randn(3, 27, 16, 2)
    feats = lifter.shared(lifter.encoder_2d(x.reshape(3 * 27, -1)).view(3, 27, -1))
    torch.testing.assert_close(feats, mpm.encode(x))
    # the sequence output before finetuning is the pretraining network's own lift, and only the strided
    # transformer and the centre head are new
    torch.testing.assert_close(lifter(x)[1], mpm.lift(x))
    torch.testing.assert_close(lifter.predict_clip(x), mpm.lift(x))
    assert {k for k in lifter.state_dict() if k not in loaded} == {
        k for k in lifter.state_dict() if k.startswith(("reduce.", "head."))
    }
    with pytest.raises(ValueError, match="sizes"):
        Lifter(tiny(joints=16, channels=64)).load_pretrained(mpm.state_dict())
    with pytest.raises(ValueError, match="lack"):
        lifter.load_pretrained({})


def test_joint_mask_uses_the_mask_token():
    model = Lifter(tiny()).eval()
    x = torch.randn(2, 27, 17, 2)
    mask = torch.zeros(2, 17, dtype=torch.bool)
    mask[:, 5] = True
    replaced = x.clone()
    replaced[:, :, 5] = model.mask_token_2d.detach()
    torch.testing.assert_close(model(x, mask)[0], model(replaced)[0])
    assert not torch.allclose(model(x, mask)[0], model(x)[0])


def test_freeze_shared_keeps_weights_and_statistics():
    model = Lifter(tiny())
    model.freeze("shared")
    before = {k: v.clone() for k, v in model.shared.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    assert not model.shared.training and model.encoder_2d.training
    centre, seq = model(torch.randn(4, 27, 17, 2))
    loss, _ = lifting_loss(centre, seq, torch.randn(4, 27, 17, 3), torch.ones(4, 27, dtype=torch.bool))
    loss.backward()
    opt.step()
    for k, v in model.shared.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_lifting_loss_hand_computed():
    target = torch.zeros(2, 3, 4, 3)
    seq = torch.zeros(2, 3, 4, 3)
    seq[:, 0, :, 2] = 3.0  # frame 0 off by 3 m: mean over 3 frames = 1
    centre = torch.zeros(2, 4, 3)
    centre[..., 0] = 0.5
    valid = torch.ones(2, 3, dtype=torch.bool)
    loss, parts = lifting_loss(centre, seq, target, valid, lambda_ft=2.0, lambda_seq=1.0)
    assert loss.item() == pytest.approx(2 * 0.5 + 1.0)
    assert parts["mpjpe_seq"].item() == pytest.approx(1.0) and parts["mpjpe_centre"].item() == pytest.approx(0.5)
    valid[:, 0] = False  # the bad frame no longer counts
    loss, _ = lifting_loss(centre, seq, target, valid, lambda_ft=1.0, lambda_seq=1.0)
    assert loss.item() == pytest.approx(0.5)


def test_decoder_centre_head_is_the_pretrained_lift_and_fully_pretrained():
    cfg = tiny()
    mpm = MPM(cfg).eval()
    lifter = Lifter(cfg, frames=9, centre_head="decoder").eval()
    loaded = lifter.load_pretrained(mpm.state_dict())
    # every parameter and buffer comes from pretraining: no strided transformer, no fresh centre head
    assert set(loaded) == set(lifter.state_dict())
    assert not hasattr(lifter, "reduce") and not hasattr(lifter, "head")
    x = torch.randn(3, 9, 17, 2)
    centre, seq = lifter(x)
    lifted = mpm.lift(x)
    torch.testing.assert_close(seq, lifted)
    torch.testing.assert_close(centre, lifted[:, 4])  # frame 4 of 9, the centre
    torch.testing.assert_close(lifter.predict_centre(x), lifted[:, 4])
    with pytest.raises(ValueError, match="odd window"):
        Lifter(cfg, frames=8, centre_head="decoder")
    with pytest.raises(ValueError, match="no strided layers"):
        Lifter(cfg, frames=9, strides=(1, 3, 3), centre_head="decoder")
    with pytest.raises(ValueError, match="centre_head must be"):
        Lifter(cfg, centre_head="mean")


@pytest.mark.parametrize("frames", [9, 27])
@pytest.mark.parametrize("centre_head,decoder_layers", [("strided", 1), ("decoder", 1), ("decoder", 2)])
def test_predict_centre_is_forward_centre_without_the_sequence_head(frames, centre_head, decoder_layers):
    """predict_centre = centre_from_features(frame_features) = forward()[0], in evaluation mode, and runs only
    what the centre frame needs: never the sequence head's modules with the strided head; with the decoder,
    the decoder's last layer for one query (fewer FLOPs than the sequence head's)."""
    lifter = Lifter(tiny(decoder_layers=decoder_layers), frames=frames, centre_head=centre_head)
    random_batch_norm_statistics(lifter)
    lifter.eval()
    x = torch.randn(5, frames, 17, 3)
    called = []
    hook = lifter.seq_head.register_forward_hook(lambda *a: called.append(1))
    with torch.no_grad():
        centre = lifter.predict_centre(x)
        features = lifter.frame_features(x.reshape(5 * frames, 17, 3))
        torch.testing.assert_close(lifter.centre_from_features(features.view(5, frames, -1)), centre)
        assert not called
        torch.testing.assert_close(centre, lifter(x)[0])
    hook.remove()
    assert features.shape == (5 * frames, 32)
    with torch.no_grad(), flop_counter() as lean:
        lifter.predict_centre(x)
    with torch.no_grad(), flop_counter() as full:
        lifter(x)
    assert lean.get_total_flops() < full.get_total_flops()
    if centre_head == "strided":  # everything but the sequence head
        with torch.no_grad(), flop_counter() as seq:
            lifter._sequence(torch.zeros(5, frames, 32))
        assert lean.get_total_flops() == full.get_total_flops() - seq.get_total_flops()
    with pytest.raises(ValueError, match="centre_from_features expects"):
        lifter.centre_from_features(torch.zeros(2, frames + 2, 32))
    with pytest.raises(ValueError, match="frame_features expects"):
        lifter.frame_features(torch.zeros(2, 16, 2))


def test_centre_prediction_refuses_training_mode_and_leaves_statistics_alone():
    """The reuse path needs batch norm as a per-frame map: in training mode every stage refuses, before any
    batch-norm statistic moves."""
    lifter = Lifter(tiny(), frames=9).train()
    stats = {k: v.clone() for k, v in lifter.state_dict().items() if "running" in k or "tracked" in k}
    x = torch.randn(2, 9, 17, 2)
    for call in (
        lambda: lifter.predict_centre(x),
        lambda: lifter.frame_features(x[0]),
        lambda: lifter.centre_from_features(torch.zeros(2, 9, 32)),
    ):
        with pytest.raises(RuntimeError, match="evaluation mode"):
            call()
    for k, v in stats.items():
        torch.testing.assert_close(lifter.state_dict()[k], v)
