"""The MPM network: parameter parity with the released code, no leakage through masks, decoder shortcut."""

from __future__ import annotations

import json

import pytest
import torch

from pretrain.masking import MaskConfig, Masks, make_masks
from pretrain.model import MPM, main, preset, summary


def _released_counts(j: int, c: int = 256, hidden: int = 512, layers: int = 4, frames: int = 243) -> dict:
    """Parameter counts of the released MPMmask2 parts, from its layer list (independent of our modules)."""
    conv = lambda i, o: i * o + o  # noqa: E731  (1x1 conv: weight + bias)
    bn = lambda n: 2 * n  # noqa: E731
    ln = lambda n: 2 * n  # noqa: E731
    layer = 4 * conv(c, c) + conv(c, hidden) + conv(hidden, c) + 2 * ln(c)
    return {
        "encoder_2d": conv(2 * j, 2 * c) + bn(2 * c),
        "encoder_3d": conv(3 * j, 2 * c) + bn(2 * c),
        "shared_spatial": 2 * (conv(2 * c, 2 * c) + bn(2 * c)) + conv(2 * c, c),
        "shared_temporal": frames * c + layers * layer + ln(c),
        "shared_norm": ln(c),
        "decoder_2d": layer + ln(c) + bn(c) + conv(c, 2 * j),
        "decoder_3d": layer + ln(c) + bn(c) + conv(c, 3 * j),
    }


def test_parity_line_matches_released_code(capsys):
    main(["--preset", "mpm", "--joints", "16", "--frames", "243", "--summary"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    # The figures of the released code (issue 6) and their derivation from its layer list agree.
    assert {k: got[k] for k in ("encoder_2d", "encoder_3d", "shared", "decoder_2d", "decoder_3d")} == {
        "encoder_2d": 17920,
        "encoder_3d": 26112,
        "shared": 2830336,
        "decoder_2d": 536352,
        "decoder_3d": 540464,
    }
    expected = _released_counts(16)
    assert {k: got[k] for k in expected} == expected
    assert got["shared"] == got["shared_spatial"] + got["shared_temporal"] + got["shared_norm"]
    assert got["tokens"] == 2 + 3 + 256 and got["dec_pos_emb"] == 243 * 256
    parts = ("encoder_2d", "encoder_3d", "shared", "decoder_2d", "decoder_3d", "tokens", "dec_pos_emb")
    assert got["total"] == sum(got[k] for k in parts)


def test_arg_overrides_a_size(capsys):
    """``--arg KEY=VALUE``: MPM's ModelConfig fields (and another backbone's constructor arguments, checked in
    tests/test_compare.py); a field that does not exist is a usage error."""
    main(["--preset", "tiny", "--frames", "9", "--arg", "channels=16", "--arg", "layers=1", "--summary"])
    got = json.loads(capsys.readouterr().out)
    assert got == summary(MPM(preset("tiny", frames=9, channels=16, layers=1)))
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--arg", "nonesuch=1"])
    assert "nonesuch" in capsys.readouterr().err


def test_mpm_s_has_three_shared_layers():
    small, full = summary(MPM(preset("mpm-s", joints=17))), summary(MPM(preset("mpm", joints=17)))
    assert small["shared_temporal"] == _released_counts(17, layers=3)["shared_temporal"]
    assert (
        full["shared_temporal"] - small["shared_temporal"]
        == _released_counts(17, layers=1)["shared_temporal"] - _released_counts(17, layers=0)["shared_temporal"]
    )


def _inputs(b=3, seed=0, cfg=None):
    cfg = cfg or preset("tiny", joints=17)
    torch.manual_seed(seed)
    model = MPM(cfg)
    x2 = torch.randn(b, cfg.frames, cfg.joints, 2)
    x3 = torch.randn(b, cfg.frames, cfg.joints, 3)
    gen = torch.Generator().manual_seed(seed)
    m2 = make_masks(b, cfg.frames, cfg.joints, MaskConfig(), gen)
    m3 = make_masks(b, cfg.frames, cfg.joints, MaskConfig(), gen)
    return model, x2, x3, m2, m3


@pytest.mark.parametrize("train", [False, True])
def test_masked_inputs_cannot_leak(train):
    # in training mode (dropout off, so outputs are deterministic) batch norm uses batch statistics:
    # they must come from visible data only
    model, x2, x3, m2, m3 = _inputs(cfg=preset("tiny", joints=17, dropout=0.0 if train else 0.1))
    model.train(train)
    out2, out3 = model(x2, m2, x3, m3)
    y2 = torch.where(m2.masked().unsqueeze(-1), torch.randn_like(x2) * 100, x2)
    y3 = torch.where(m3.masked().unsqueeze(-1), torch.randn_like(x3) * 100, x3)
    assert not torch.equal(y2, x2) and not torch.equal(y3, x3)
    new2, new3 = model(y2, m2, y3, m3)
    assert torch.equal(new2, out2) and torch.equal(new3, out3)
    # control: a visible value does change the output
    vis = ~m2.masked()
    b, t, j = vis.nonzero()[0].tolist()
    z2 = x2.clone()
    z2[b, t, j] += 1.0
    assert not torch.allclose(model(z2, m2, x3, m3)[0], out2)


def test_decoder_shortcut_equals_full_sequence_decoding():
    model, _, x3, _, m3 = _inputs()
    model.eval()
    cfg = model.cfg
    feats = torch.randn(3, m3.visible.shape[1], cfg.channels)
    pos = model.dec_pos_emb
    fast = model.decoder_3d(feats, m3.visible, model.temporal_mask_token, pos)
    # naive: every frame is the mask token, visible frames carry their feature; add positions; decode
    full = model.temporal_mask_token.expand(3, cfg.frames, -1).clone()
    for i in range(3):
        full[i, m3.visible[i]] = feats[i]
    dec = model.decoder_3d
    y = dec.stack(full + pos)
    naive = dec.head(dec.head_bn(y.reshape(-1, cfg.channels))).view(3, cfg.frames, cfg.joints, 3)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)


def test_encode_is_the_unmasked_path():
    model, x2, x3, _, _ = _inputs()
    model.eval()
    feats = model.encode(x2)
    assert feats.shape == (3, model.cfg.frames, model.cfg.channels)
    every = torch.arange(model.cfg.frames).expand(3, -1)
    h = model.encoder_2d(x2.reshape(-1, x2.shape[2] * 2)).view(3, model.cfg.frames, -1)
    torch.testing.assert_close(model.shared(h, every), feats)
    # no masking at all reproduces the full-sequence features in the decoder input
    none = Masks(torch.zeros(x2.shape[:3], dtype=torch.bool), torch.zeros(x2.shape[:2], dtype=torch.bool), every)
    rec2, rec3 = model(x2, none, None, None)
    assert rec3 is None and rec2.shape == x2.shape


def test_forward_rejects_bad_shapes():
    model, x2, x3, m2, m3 = _inputs()
    with pytest.raises(ValueError, match="pose3d"):
        model(x2, m2, x2, m3)
    with pytest.raises(ValueError, match="needs pose2d or pose3d"):
        model(None, None, None, None)
    with pytest.raises(ValueError, match="exceed model.frames"):
        model.encode(torch.zeros(1, model.cfg.frames + 1, 17, 2))
    with pytest.raises(KeyError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        preset("tiny", heads=5)


def test_lift_is_the_forward_third_path_on_complete_input():
    """MPM.lift (complete 2D, hidden joints as mask tokens) equals forward's lift output with every frame
    visible and the same joints masked."""
    model, x2, _, _, _ = _inputs()
    model.eval()
    t, j = x2.shape[1], x2.shape[2]
    hidden = torch.zeros(3, t, j, dtype=torch.bool)
    hidden[0, :4] = True  # frames without usable 2D
    every = torch.arange(t).expand(3, -1)
    masks = Masks(hidden, torch.zeros(3, t, dtype=torch.bool), every)
    torch.testing.assert_close(model.lift(x2, hidden), model(x2, masks, None, None, lift=True)[2])
    assert not torch.allclose(model.lift(x2, hidden)[0], model.lift(x2)[0])


def test_attention_under_cpu_bf16_autocast_runs_in_fp32_and_matches():
    """Under CPU bf16 autocast the attention itself runs in fp32 (its bf16 CPU backward is slow): the output
    is the fp32 attention of the bf16 projections, to bf16 precision, and gradients reach the projections."""
    from pretrain.model import Attention

    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0)
    x = torch.randn(3, 9, 96, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        y = attn(x)
    assert y.dtype == torch.bfloat16
    b, t, c3 = x.shape
    q, k, v = x.detach().bfloat16().float().view(b, t, 3, 4, 8).permute(2, 0, 3, 1, 4)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, 32)
    ref = ref.bfloat16().float() @ attn.out.weight.bfloat16().float().T + attn.out.bias.bfloat16().float()
    torch.testing.assert_close(y.float(), ref, atol=0.03, rtol=0.02)
    y.float().square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
