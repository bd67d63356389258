"""Published checkpoints in (finetune/convert.py): state dicts built in each released layout, with the key names
and shapes of the reference code (written out below from MotionBERT ``lib/model/DSTformer.py`` @ 20db205a,
mmpose ``mmpose/models/backbones/dstformer.py`` and ``heads/regression_heads/motion_regression_head.py`` @
fc8973bb, mmpose ``mmpose/models/backbones/tcn.py`` and ``heads/temporal_regression_head.py`` @ 051057cb,
VideoPose3D ``common/model.py`` @ 1afb1ca0, PoseFormer ``common/model_poseformer.py`` @ 73614198),
converted by the command into lifter files whose weights are the source tensors; a key too many, too few or
of another shape is named; and, with a checkout named by VIDEOPOSE3D / MOTIONBERT, the converted lifter's
outputs equal the reference module's on its own saved weights."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from finetune.checkpoint import load_lifter, save_lifter
from finetune.convert import convert, main
from finetune.evaluate import EvalConfig, evaluate_lifter

J = 17


def _linear(prefix: str, n_in: int, n_out: int) -> dict:
    return {f"{prefix}.weight": (n_out, n_in), f"{prefix}.bias": (n_out,)}


def _layer_norm(prefix: str, n: int) -> dict:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def _batch_norm(prefix: str, n: int) -> dict:
    stats = {f"{prefix}.running_mean": (n,), f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()}
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), **stats}


def videopose3d_keys(c: int = 16, widths: tuple[int, ...] = (3, 3)) -> dict:
    """TemporalModel(17, 2, 17, widths, channels=c): expand_conv, expand_bn, per further width two of
    layers_conv / layers_bn, shrink."""
    keys = {"expand_conv.weight": (c, 2 * J, widths[0]), **_batch_norm("expand_bn", c)}
    for i, w in enumerate(widths[1:]):
        keys |= {f"layers_conv.{2 * i}.weight": (c, c, w), f"layers_conv.{2 * i + 1}.weight": (c, c, 1)}
        keys |= _batch_norm(f"layers_bn.{2 * i}", c) | _batch_norm(f"layers_bn.{2 * i + 1}", c)
    return keys | {"shrink.weight": (3 * J, c, 1), "shrink.bias": (3 * J,)}


def _vit_block(prefix: str, d: int, attn: str = "attn", mlp: str = "mlp", norms=("norm1", "norm2")) -> dict:
    keys = _layer_norm(f"{prefix}.{norms[0]}", d) | _layer_norm(f"{prefix}.{norms[1]}", d)
    keys |= _linear(f"{prefix}.{attn}.qkv", d, 3 * d) | _linear(f"{prefix}.{attn}.proj", d, d)
    return keys | _linear(f"{prefix}.{mlp}.fc1", d, 2 * d) | _linear(f"{prefix}.{mlp}.fc2", 2 * d, d)


def poseformer_keys(frames: int = 9, r: int = 8) -> dict:
    """nn.DataParallel(PoseTransformer(num_frame=9, embed_dim_ratio=8, depth=1, mlp_ratio=2))."""
    e = r * J
    keys = {"Spatial_pos_embed": (1, J, r), "Temporal_pos_embed": (1, frames, e)}
    keys |= _linear("Spatial_patch_to_embedding", 2, r) | _vit_block("Spatial_blocks.0", r) | _vit_block("blocks.0", e)
    keys |= _layer_norm("Spatial_norm", r) | _layer_norm("Temporal_norm", e)
    keys |= {"weighted_mean.weight": (1, frames, 1), "weighted_mean.bias": (1,)}
    keys |= _layer_norm("head.0", e) | _linear("head.1", e, 3 * J)
    return {f"module.{k}": v for k, v in keys.items()}


def motionbert_keys(frames: int = 9, c: int = 16, rep: int = 8) -> dict:
    """nn.DataParallel(DSTformer(dim_feat=16, dim_rep=8, depth=1, mlp_ratio=2, maxlen=9))."""
    keys = {"temp_embed": (1, frames, 1, c), "pos_embed": (1, J, c)} | _linear("joints_embed", 3, c)
    for stream in ("blocks_st.0", "blocks_ts.0"):
        for part in ("s", "t"):
            keys |= _vit_block(stream, c, f"attn_{part}", f"mlp_{part}", (f"norm1_{part}", f"norm2_{part}"))
    keys |= _layer_norm("norm", c) | _linear("pre_logits.fc", c, rep) | _linear("head", rep, 3)
    keys |= _linear("ts_attn.0", 2 * c, 2)
    return {f"module.{k}": v for k, v in keys.items()}


def as_mmpose(motionbert: dict) -> dict:
    """The same tensors under mmpose's names (spat_embed, attn_regress, Sequential MLPs, head.pre_logits /
    head.fc), written out rather than derived from the converter's table."""
    out = {}
    for key, value in motionbert.items():
        key = key.removeprefix("module.")
        for mlp in ("mlp_s", "mlp_t"):
            key = key.replace(f"{mlp}.fc1.", f"{mlp}.0.").replace(f"{mlp}.fc2.", f"{mlp}.2.")
        if key.startswith(("pre_logits.", "head.")):
            key = "head." + key.replace("head.", "fc.")
        else:
            key = "backbone." + key.replace("pos_embed", "spat_embed").replace("ts_attn.", "attn_regress.")
        out[key] = value
    return out


def tensors(keys: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.1
    return out


# the generated checkpoints' small sizes, as constructor arguments of the converted network
SMALL = {
    "videopose3d": dict(frames=9, overrides=dict(channels=16)),
    "poseformer": dict(frames=9, overrides=dict(channels=8, layers=1)),
    "dstformer": dict(frames=9, overrides=dict(channels=16, layers=1, dim_rep=8)),
}


def _round_trip(tmp_path, blob: dict, backbone: str, name: str = "released.bin"):
    """Save ``blob`` as a released file, convert it at the small size, write and read back the lifter file."""
    torch.save(blob, tmp_path / name)
    lifter, meta = convert(tmp_path / name, backbone, **SMALL[backbone])
    return load_lifter(save_lifter(tmp_path / f"{name}.pt", lifter, meta))


@pytest.mark.parametrize(
    ("backbone", "source", "expected_names"),
    [
        ("videopose3d", videopose3d_keys, {"layers_conv.1.weight": "layers_conv.1.weight"}),
        (
            "poseformer",
            poseformer_keys,
            {
                "module.Spatial_blocks.0.attn.qkv.weight": "spatial_blocks.0.attn.qkv.weight",
                "module.Temporal_pos_embed": "temporal_pos_embed",
                "module.head.1.bias": "head.1.bias",
            },
        ),
        (
            "dstformer",
            motionbert_keys,
            {
                "module.blocks_ts.0.mlp_t.fc2.weight": "blocks_ts.0.mlp_t.fc2.weight",
                "module.ts_attn.0.bias": "ts_attn.0.bias",
            },
        ),
    ],
)
def test_released_layouts_round_trip_into_lifter_files(backbone, source, expected_names, tmp_path):
    released = tensors(source())
    blob = {"model_pos": released, "epoch": 80, "lr": 1e-5}
    if backbone == "videopose3d":  # run.py's other entries, its numpy random state included
        blob |= {"random_state": np.random.RandomState(0).get_state(), "model_traj": {"x": torch.zeros(1)}}
    lifter, meta = _round_trip(tmp_path, blob, backbone)
    assert meta["keys"] == len(released) and meta["layout"] == {"dstformer": "motionbert"}.get(backbone, backbone)
    state = lifter.backbone.state_dict()
    assert len(state) == len(released)
    for src, name in expected_names.items():
        torch.testing.assert_close(state[name], released[src])
    assert sorted(v.double().sum().item() for v in state.values()) == pytest.approx(
        sorted(v.double().sum().item() for v in released.values())
    )


def test_a_converted_dstformer_is_never_scored_as_metres(tmp_path):
    lifter, meta = _round_trip(tmp_path, {"model_pos": tensors(motionbert_keys())}, "dstformer")
    assert meta["output_units"].startswith("MotionBERT's normalised camera units")
    # refused before any store is opened (this one does not exist)
    with pytest.raises(ValueError, match=r"mb\.pt: this lifter predicts MotionBERT's normalised .*, not metres"):
        evaluate_lifter(lifter, EvalConfig(store=str(tmp_path / "no-store")), tmp_path, meta, "mb.pt")
    # a converted VideoPose3D predicts metres, and the same check lets it through to the store
    vp3d, vp3d_meta = _round_trip(tmp_path, {"model_pos": tensors(videopose3d_keys())}, "videopose3d", "vp3d.bin")
    with pytest.raises(ValueError, match="no-store: no h36m or mpi_inf_3dhp test sequence"):
        evaluate_lifter(vp3d, EvalConfig(store=str(tmp_path / "no-store")), tmp_path, vp3d_meta, "vp3d.pt")


def test_mmpose_and_motionbert_layouts_give_the_same_network(tmp_path):
    released = tensors(motionbert_keys())
    mb, mb_meta = _round_trip(tmp_path, {"model_pos": released}, "dstformer", "motionbert.pth")
    mmpose = {"meta": {"epoch": 120}, "state_dict": as_mmpose(released)}
    mm, mm_meta = _round_trip(tmp_path, mmpose, "dstformer", "mmpose.pth")
    assert (mb_meta["layout"], mm_meta["layout"]) == ("motionbert", "mmpose")
    x = torch.randn(2, 9, J, 3)
    with torch.no_grad():
        torch.testing.assert_close(mm.predict_clip(x), mb.predict_clip(x))


class ConvModule(nn.Module):
    """mmcv's ConvModule as mmpose's TCN builds it: Conv1d without bias, BN1d, ReLU; its submodule names."""

    def __init__(self, n_in: int, n_out: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm1d(n_out)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class MMPoseTemporalBlock(nn.Module):
    """mmpose ``BasicTemporalBlock`` (symmetric, residual, not strided): conv1 (dilated) and conv2 (1 x 1), each
    a ConvModule and a Dropout in a Sequential, plus the input cropped by (kernel - 1) * dilation / 2 a side."""

    def __init__(self, c: int, kernel: int, dilation: int):
        super().__init__()
        self.pad = (kernel - 1) * dilation // 2
        self.conv1 = nn.Sequential(ConvModule(c, c, kernel, dilation), nn.Dropout(0.25))
        self.conv2 = nn.Sequential(ConvModule(c, c, 1), nn.Dropout(0.25))

    def forward(self, x):
        return self.conv2(self.conv1(x)) + x[:, :, self.pad : x.shape[2] - self.pad]


class MMPoseVideoPose3D(nn.Module):
    """mmpose's ``PoseLifter`` with ``TCN(in_channels=34, stem_channels=c, kernel_sizes=widths)`` and
    ``TemporalRegressionHead(c, 17)`` (``head`` in 1.x, ``keypoint_head`` in 0.x): (N, 34, T) -> (N, 17, 3)."""

    def __init__(self, c: int = 16, widths: tuple[int, ...] = (3, 3), head: str = "head"):
        super().__init__()
        self.head_name = head
        self.backbone = nn.Module()
        self.backbone.expand_conv = ConvModule(2 * J, c, widths[0])
        dilations = np.cumprod(widths)[:-1]
        self.backbone.tcn_blocks = nn.ModuleList(
            MMPoseTemporalBlock(c, w, int(d)) for w, d in zip(widths[1:], dilations, strict=True)
        )
        setattr(self, head, nn.Module())
        getattr(self, head).conv = nn.Conv1d(c, 3 * J, 1)

    def forward(self, x):
        x = self.backbone.expand_conv(x)
        for block in self.backbone.tcn_blocks:
            x = block(x)
        return getattr(self, self.head_name).conv(x).reshape(len(x), J, 3)


@pytest.mark.parametrize("head", ["head", "keypoint_head"])
def test_mmpose_videopose3d_converts_to_the_same_outputs(head, tmp_path):
    """A network in mmpose's module layout (so its state dict has mmpose's key names), with random weights,
    saved as an mmpose checkpoint and converted: the lifter's output equals the mmpose network's on the same
    2D (its (N, J * 2, T) input, the centre frame's (N, J, 3) output)."""
    ref = _randomise(MMPoseVideoPose3D(head=head))
    assert "backbone.tcn_blocks.0.conv2.0.bn.running_var" in ref.state_dict()
    lifter, meta = _round_trip(tmp_path, {"meta": {"epoch": 160}, "state_dict": ref.state_dict()}, "videopose3d")
    assert meta["layout"] == "mmpose-tcn" and meta["keys"] == len(ref.state_dict())
    x = torch.randn(3, 9, J, 2)
    with torch.no_grad():
        torch.testing.assert_close(lifter(x)[0], ref(x.reshape(3, 9, 2 * J).transpose(1, 2)), rtol=1e-5, atol=1e-5)


def test_mmpose_simplebaseline3d_is_refused_by_shape(tmp_path):
    """mmpose's SimpleBaseline3D is the TCN with kernel size 1: read as a VideoPose3D it does not fit, and the
    message names the kernel's shape."""
    ref = MMPoseVideoPose3D(widths=(1, 1, 1))
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "simplebaseline3d.pth")
    with pytest.raises(ValueError, match=r"backbone.expand_conv.conv.weight -> expand_conv.weight: \(16, 34, 1\)"):
        convert(tmp_path / "simplebaseline3d.pth", "videopose3d", **SMALL["videopose3d"])


def test_the_command_writes_a_released_size_lifter(tmp_path, capsys):
    released = tensors(videopose3d_keys(c=1024, widths=(3, 3, 3)))
    torch.save({"model_pos": released}, tmp_path / "pretrained_h36m.bin")
    out = main(
        [str(tmp_path / "pretrained_h36m.bin"), "--backbone", "videopose3d", "--frames", "27", "--out", str(tmp_path)]
    )
    assert out == tmp_path / "lifter.pt" and "videopose3d layout, 32 keys" in capsys.readouterr().out
    lifter, meta = load_lifter(out)
    assert lifter.frames == 27 and meta["output_units"].startswith("metres")
    torch.testing.assert_close(lifter.backbone.shrink.weight, released["shrink.weight"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: sd.pop("shrink.bias"), r"missing keys \(1\): shrink.bias"),
        (lambda sd: sd.update({"extra.weight": torch.zeros(1)}), r"unmatched source keys \(1\): extra.weight"),
        (
            lambda sd: sd.update({"shrink.bias": torch.zeros(3)}),
            r"other shapes \(1\): shrink.bias -> shrink.bias: \(3,\) vs \(51,\)",
        ),
        (lambda sd: sd.pop("expand_bn.num_batches_tracked"), None),  # a counter older files lack: accepted
    ],
)
def test_every_unfit_key_is_named(change, message, tmp_path):
    state = tensors(videopose3d_keys())
    change(state)
    torch.save({"model_pos": state}, tmp_path / "released.bin")
    if message is None:
        convert(tmp_path / "released.bin", "videopose3d", **SMALL["videopose3d"])
        return
    with pytest.raises(ValueError, match=message):
        convert(tmp_path / "released.bin", "videopose3d", **SMALL["videopose3d"])


def test_wrong_sizes_and_files_are_refused(tmp_path, capsys):
    torch.save({"model_pos": tensors(videopose3d_keys())}, tmp_path / "released.bin")
    small = SMALL["videopose3d"]["overrides"]
    with pytest.raises(
        ValueError, match=r"missing keys \(10\): layers_conv.2.weight, layers_conv.3.weight, layers_bn.2.weight"
    ):
        convert(tmp_path / "released.bin", "videopose3d", frames=27, overrides=small)  # 9 frames read as 27
    torch.save({"state_dict": {}}, tmp_path / "other.bin")
    with pytest.raises(ValueError, match=r"no released poseformer layout \(poseformer\)"):
        convert(tmp_path / "other.bin", "poseformer", **SMALL["poseformer"])
    torch.save({"model_pos": nn.Linear(2, 2)}, tmp_path / "code.bin")  # a pickled module, not data
    with pytest.raises(SystemExit):
        main([str(tmp_path / "code.bin"), "--backbone", "videopose3d", "--out", str(tmp_path / "x.pt")])
    assert "not loaded" in capsys.readouterr().err


def _checkout(variable: str, marker: str) -> Path:
    path = os.environ.get(variable)
    if not path or not (Path(path) / marker).is_file():
        pytest.skip(f"{variable} does not name a checkout with {marker}: the comparison with the reference needs one")
    return Path(path)


def _randomise(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_converted_videopose3d_equals_the_reference(tmp_path):
    root = _checkout("VIDEOPOSE3D", "common/model.py")
    spec = importlib.util.spec_from_file_location("videopose3d_reference_model", root / "common/model.py")
    ref_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_module)
    ref = _randomise(ref_module.TemporalModel(17, 2, 17, [3, 3], channels=16))
    lifter, _ = _round_trip(tmp_path, {"model_pos": ref.state_dict()}, "videopose3d")
    x = torch.randn(3, 9, J, 2)
    with torch.no_grad():
        torch.testing.assert_close(lifter(x)[0], ref(x)[:, 0], rtol=1e-5, atol=1e-5)


def test_converted_motionbert_equals_the_reference(tmp_path, monkeypatch):
    root = _checkout("MOTIONBERT", "lib/model/DSTformer.py")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "lib", raising=False)
    from lib.model.DSTformer import DSTformer  # the reference, from the checkout

    ref = DSTformer(
        dim_in=3,
        dim_out=3,
        dim_feat=16,
        dim_rep=8,
        depth=1,
        num_heads=8,
        mlp_ratio=2,
        norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
        maxlen=9,
        num_joints=17,
    )
    released = {f"module.{k}": v for k, v in _randomise(ref).state_dict().items()}  # nn.DataParallel's names
    lifter, _ = _round_trip(tmp_path, {"model_pos": released}, "dstformer")
    x = torch.randn(2, 9, J, 3)
    with torch.no_grad():
        torch.testing.assert_close(lifter.predict_clip(x), ref(x), rtol=1e-5, atol=1e-5)
