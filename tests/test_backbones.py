"""The field's other lifters (pretrain/backbones): parameter counts equal the released code's, output shapes per
protocol, VideoPose3D's two variants sharing weights, Martinez' max-norm, the ``python -m pretrain.model
--backbone`` line, and, where a checkout of the reference is named by an environment variable (VIDEOPOSE3D,
MOTIONBERT, POSEFORMER), equal outputs on the same weights (skipped otherwise).

Counts and their sources:

- VideoPose3D: 8,555,571 / 12,753,971 / 16,952,371 for 27 / 81 / 243 frames (17 joints, 1024 channels):
  ``run.py``'s "Trainable parameter count" with facebookresearch/VideoPose3D ``common/model.py`` @ 1afb1ca0
  (27 frames: the figure in ``tests/test_videopose3d_compare.py``'s run.py output sample); derived again below
  from the layer list.
- SimpleBaseline3D: 4,291,632 at Martinez' 16 joints, from the layer list of una-dinosauria/3d-pose-baseline
  ``src/linear_model.py`` @ 12377210 (= weigq/3d_pose_baseline_pytorch ``src/model.py`` @ 3043ba49).
- PoseFormer: 9,602,885 at 81 frames, 17 joints (zczcwh/PoseFormer ``common/model_poseformer.py`` @ 73614198
  built as ``run_poseformer.py`` @ 3d1341d7; the paper's "9.60M").
- DSTformer: 42,466,317 (full, MotionBERT ``configs/pose3d/MB_ft_h36m.yaml`` @ c5db08c5) and 16,001,549
  (lite, ``configs/pretrain/MB_lite.yaml`` @ c5db08c5), Walter0807/MotionBERT ``lib/model/DSTformer.py``
  @ 20db205a via ``lib/utils/learning.py`` ``load_backbone``.

Every count was also taken from the reference module itself, instantiated from those commits (outputs equal
to 5e-7 on shared random weights).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrain import backbones
from pretrain.backbones.simplebaseline import SimpleBaseline, clip_by_norm
from pretrain.backbones.videopose3d import TemporalModel, TemporalModelOptimized1f
from pretrain.model import count, main

linear = lambda i, o: i * o + o  # noqa: E731
norm = lambda n: 2 * n  # noqa: E731  (batch or layer norm: weight and bias)


def _videopose3d(frames: int, j: int = 17, c: int = 1024) -> int:
    blocks = {27: 2, 81: 3, 243: 4}[frames]
    return j * 2 * c * 3 + norm(c) + blocks * (c * c * 3 + c * c + 2 * norm(c)) + linear(c, 3 * j)


def _simplebaseline(j: int = 16, c: int = 1024, stages: int = 2) -> int:
    return linear(2 * j, c) + norm(c) + stages * 2 * (linear(c, c) + norm(c)) + linear(c, 3 * j)


def _vit_block(d: int, ratio: float) -> int:
    h = int(d * ratio)
    return 2 * norm(d) + linear(d, 3 * d) + linear(d, d) + linear(d, h) + linear(h, d)


def _poseformer(frames: int = 81, j: int = 17, r: int = 32, depth: int = 4) -> int:
    e = r * j
    return (
        linear(2, r)
        + j * r
        + frames * e
        + depth * (_vit_block(r, 2) + _vit_block(e, 2))
        + norm(r)
        + norm(e)
        + linear(frames, 1)
        + norm(e)
        + linear(e, 3 * j)
    )


def _dstformer(c: int, ratio: float, depth: int = 5, rep: int = 512, frames: int = 243, j: int = 17) -> int:
    block = 2 * _vit_block(c, ratio)  # a spatial and a temporal step
    return (
        linear(3, c)
        + 2 * depth * block
        + norm(c)
        + linear(c, rep)
        + linear(rep, 3)
        + frames * c
        + j * c
        + depth * linear(2 * c, 2)
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "expected", "derived"),
    [
        ("videopose3d", dict(frames=27), 8_555_571, _videopose3d(27)),
        ("videopose3d", dict(frames=81), 12_753_971, _videopose3d(81)),
        ("videopose3d", dict(frames=243), 16_952_371, _videopose3d(243)),
        ("simplebaseline", dict(joints=16), 4_291_632, _simplebaseline()),
        ("poseformer", dict(), 9_602_885, _poseformer()),
        ("dstformer", dict(), 42_466_317, _dstformer(512, 2)),
        ("dstformer", dict(size="lite"), 16_001_549, _dstformer(256, 4)),
    ],
)
def test_parameter_counts_equal_the_released_code(name, kwargs, expected, derived):
    assert derived == expected
    assert count(backbones.build(name, **kwargs)) == expected


@pytest.mark.parametrize(
    ("name", "kwargs", "x_shape", "out_shape"),
    [
        ("videopose3d", dict(frames=27, channels=32), (2, 27, 17, 2), (2, 1, 17, 3)),
        ("simplebaseline", dict(joints=16, channels=64), (2, 5, 16, 2), (2, 5, 16, 3)),
        ("poseformer", dict(frames=9, channels=8, layers=1), (2, 9, 17, 2), (2, 1, 17, 3)),
        ("dstformer", dict(frames=27, channels=32, layers=1, heads=4, dim_rep=16), (2, 20, 17, 3), (2, 20, 17, 3)),
    ],
)
def test_output_shapes_follow_the_protocol(name, kwargs, x_shape, out_shape):
    net = backbones.build(name, **kwargs).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(x_shape)).shape) == out_shape
    assert net.protocol == ("seq2seq" if name == "dstformer" else "centre")


def test_wrong_inputs_and_arguments_are_named():
    net = backbones.build("poseformer", frames=9, channels=8, layers=1)
    with pytest.raises(ValueError, match="8 frames, expected 9"):
        net(torch.randn(1, 8, 17, 2))
    with pytest.raises(ValueError, match=r"\(B, T, 17, 3\)"):
        backbones.build("dstformer", frames=9, channels=16, layers=1, heads=2)(torch.randn(1, 9, 17, 2))
    with pytest.raises(ValueError, match="no size 'lite'"):
        backbones.build("videopose3d", size="lite")
    with pytest.raises(ValueError, match="not a power of 3"):
        backbones.build("videopose3d", frames=25)
    with pytest.raises(ValueError, match=r"takes no argument \['hidden'\]"):
        backbones.build("simplebaseline", hidden=3)
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build("resnet")


def _random_batch_norms(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("causal", [False, True])
def test_videopose3d_variants_share_weights_and_outputs(causal):
    """A state dict moves between the two variants unchanged; the strided model on each window equals the dilated
    model's sliding output over the sequence (VideoPose3D trains the one, evaluates the other)."""
    full = TemporalModel(17, 27, channels=64, causal=causal)
    _random_batch_norms(full)
    single = TemporalModelOptimized1f(17, 27, channels=64, causal=causal)
    single.load_state_dict(full.state_dict(), strict=True)
    full.eval(), single.eval()
    x = torch.randn(2, 40, 17, 2)
    with torch.no_grad():
        seq = full(x)
        windows = torch.cat([single(x[:, i : i + 27]) for i in range(14)], dim=1)
    assert seq.shape == (2, 14, 17, 3)
    torch.testing.assert_close(windows, seq, rtol=1e-5, atol=1e-5)
    full2 = TemporalModel(17, 27, channels=64, causal=causal)
    full2.load_state_dict(single.state_dict(), strict=True)


def test_simplebaseline_max_norm_clips_each_weight_in_the_forward_pass():
    """As the TF code's ``tf.clip_by_norm(w, 1)``: the product uses w / max(1, ||w||_F); gradients reach w."""
    net = SimpleBaseline(joints=16, channels=32, layers=1, dropout=0.0).eval()
    assert torch.linalg.vector_norm(net.w1.weight) > 1  # kaiming-initialised weights are clipped
    x = torch.randn(4, 1, 16, 2)
    plain = SimpleBaseline(joints=16, channels=32, layers=1, dropout=0.0, max_norm=False).eval()
    state = {k: (clip_by_norm(v) if k.endswith("weight") and v.ndim == 2 else v) for k, v in net.state_dict().items()}
    plain.load_state_dict(state)
    torch.testing.assert_close(net(x), plain(x))
    net.train()
    net(torch.randn(8, 1, 16, 2)).square().sum().backward()
    assert net.w2.weight.grad is not None and net.w2.weight.grad.abs().sum() > 0
    small = torch.full((3, 3), 0.1)
    torch.testing.assert_close(clip_by_norm(small), small)  # below norm 1: unchanged


def test_dstformer_fusion_starts_even_and_the_representation_feeds_the_head():
    net = backbones.build("dstformer", frames=9, channels=16, layers=2, heads=2, dim_rep=8).eval()
    for fuse in net.ts_attn:
        assert torch.all(fuse.weight == 0) and torch.all(fuse.bias == 0.5)
    x = torch.randn(2, 9, 17, 3)
    with torch.no_grad():
        rep = net.representation(x)
        assert rep.shape == (2, 9, 17, 8)
        torch.testing.assert_close(net.head(rep), net(x))


@pytest.mark.parametrize(
    ("argv", "total"),
    [
        (["--backbone", "videopose3d", "--frames", "27"], 8_555_571),
        (["--backbone", "simplebaseline", "--joints", "16"], 4_291_632),
        (["--backbone", "poseformer", "--frames", "81"], 9_602_885),
        (["--backbone", "dstformer", "--frames", "243"], 42_466_317),
        (["--backbone", "dstformer", "--size", "lite"], 16_001_549),
    ],
)
def test_summary_line(argv, total, capsys):
    main([*argv, "--summary"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    assert got["total"] == total
    parts = {k: v for k, v in got.items() if k not in ("backbone", "size", "arguments", "total")}
    assert sum(parts.values()) == total


def _checkout(variable: str, marker: str) -> Path:
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"{variable} is not set: the comparison with the reference needs a checkout of it")
    if not (Path(path) / marker).is_file():
        pytest.skip(f"{variable}={path} has no {marker}")
    return Path(path)


def _shared_random_weights(ref: nn.Module) -> None:
    torch.manual_seed(0)
    for p in ref.parameters():
        p.data.normal_(0, 0.05)
    _random_batch_norms(ref)
    ref.eval()


def test_videopose3d_equals_the_reference_module():
    root = _checkout("VIDEOPOSE3D", "common/model.py")
    spec = importlib.util.spec_from_file_location("videopose3d_reference_model", root / "common/model.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    for mine, theirs in ((TemporalModel, ref.TemporalModel), (TemporalModelOptimized1f, ref.TemporalModelOptimized1f)):
        reference = theirs(17, 2, 17, [3, 3, 3], channels=64)
        _shared_random_weights(reference)
        net = mine(17, 27, channels=64).eval()
        net.load_state_dict(reference.state_dict(), strict=True)
        x = torch.randn(2, 27 if mine is TemporalModelOptimized1f else 35, 17, 2)
        with torch.no_grad():
            torch.testing.assert_close(net(x), reference(x), rtol=1e-5, atol=1e-5)


def test_dstformer_equals_the_reference_module(monkeypatch):
    root = _checkout("MOTIONBERT", "lib/model/DSTformer.py")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "lib", raising=False)
    from lib.model.DSTformer import DSTformer  # the reference, from the checkout

    ref = DSTformer(
        dim_in=3,
        dim_out=3,
        dim_feat=32,
        dim_rep=16,
        depth=2,
        num_heads=4,
        mlp_ratio=2,
        norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
        maxlen=27,
        num_joints=17,
    )
    _shared_random_weights(ref)
    net = backbones.build("dstformer", frames=27, channels=32, dim_rep=16, layers=2, heads=4).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 20, 17, 3)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)


def test_poseformer_equals_the_reference_module(monkeypatch):
    root = _checkout("POSEFORMER", "common/model_poseformer.py")
    pytest.importorskip("timm", reason="the PoseFormer reference imports timm")
    pytest.importorskip("einops", reason="the PoseFormer reference imports einops")
    spec = importlib.util.spec_from_file_location("poseformer_reference_model", root / "common/model_poseformer.py")
    ref_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_module)
    ref = ref_module.PoseTransformer(num_frame=9, num_joints=17, embed_dim_ratio=8, depth=2, num_heads=4, qkv_bias=True)
    _shared_random_weights(ref)
    net = backbones.build("poseformer", frames=9, channels=8, layers=2, heads=4).eval()
    state = {".".join([k.split(".")[0].lower(), *k.split(".")[1:]]): v for k, v in ref.state_dict().items()}
    net.load_state_dict(state, strict=True)
    x = torch.randn(3, 9, 17, 2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x.clone()), rtol=1e-5, atol=1e-5)
