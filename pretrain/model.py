"""The MPM network: light 2D / 3D encoders, a shared spatial MLP and temporal transformer, light decoders.

Architecture and sizes follow the released MPM code (Zhang et al., "A Unified 2D-3D Human Pose Representation
via Masked Pose Modeling"; github.com/vvirgooo2/MPM ``model/MPMLift.py`` class ``MPMmask2`` and
``model/component/{Encoder,Transformer_mask}.py``), re-written for speed:

- 1x1 convolutions over (B, C, T) become ``nn.Linear`` over channels-last (B * T, C) rows: the same weights
  (a kernel of size 1) and the same parameter count, with no transposes; batch norm runs on the same rows.
- Temporally masked frames are dropped *before* the per-frame encoders and the spatial MLP (the released
  code encodes all frames and drops them only before the temporal transformer); per-frame layers cannot see
  other frames, so the visible features are the same apart from batch-norm statistics, which now come from
  visible frames only (masked frames cannot leak through them).
- The 2D-task and 3D-task samples pass through the shared body in separate passes, as in the released
  loop, so the batch norms of the shared spatial MLP normalise each modality with its own statistics. With
  one concatenated pass the shared body's output would depend on the batch's mix of 2D and 3D samples, and
  finetuning, which feeds 2D only, would normalise its features in a way pretraining never did.
- Attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels), with q, k and v
  projected by one Linear(C, 3C) (the released three Linear(C, C), same parameters). In the decoders the
  masked frames' first projection depends on the frame only and is computed once per frame.
- Layer norms are ``nn.LayerNorm`` (eps 1e-6). The released stacks define a final layer norm that their
  ``forward`` never applies; here every stack applies its final norm, so no parameter is dead.

Shapes: ``J`` joints, ``T`` frames (at most ``frames``), ``C`` channels. 2D inputs are normalised image
coordinates (see DESIGN.md), 3D inputs metres root-relative in camera coordinates; outputs are in the same
units as the inputs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from pretrain.masking import Masks


@dataclass
class ModelConfig:
    """Network sizes. ``channels`` C, ``hidden`` the transformer MLP width, ``layers`` shared temporal
    layers, ``heads`` attention heads, ``frames`` the longest sequence (positional tables), ``joints`` J,
    ``decoder_layers`` per decoder, dropout rates as in the released code (0.1), attention dropout off by
    default so the fused CPU/GPU attention kernels apply."""

    channels: int = 256
    hidden: int = 512
    layers: int = 4
    heads: int = 8
    frames: int = 243
    joints: int = 17
    decoder_layers: int = 1
    dropout: float = 0.1
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.channels % self.heads:
            raise ValueError(f"model.channels={self.channels} is not divisible by model.heads={self.heads}")
        for key in ("channels", "hidden", "layers", "heads", "frames", "joints", "decoder_layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")


PRESETS: dict[str, dict] = {
    "mpm": dict(channels=256, hidden=512, layers=4, heads=8, frames=243),
    "mpm-s": dict(channels=256, hidden=512, layers=3, heads=8, frames=243),
    "tiny": dict(channels=32, hidden=64, layers=2, heads=4, frames=27),
    "lite": dict(channels=64, hidden=128, layers=2, heads=4, frames=27),
    "cpu": dict(channels=128, hidden=256, layers=2, heads=4, frames=243, dropout=0.0),
}


def preset(name: str, **overrides) -> ModelConfig:
    """ModelConfig of a named preset with keyword overrides: ``mpm`` and ``mpm-s`` are the released sizes;
    ``tiny`` (C 32) and ``lite`` (C 64) are 27-frame networks for CPU runs; ``cpu`` (C 128, no dropout,
    positions for up to 243 frames) is the Human3.6M CPU recipe's (``finetune/configs/h36m.yaml``): on two
    cores a dropout layer's mask drawing cost more than its matrix products, and at a recipe's few passes over
    the data dropout slowed learning more than it regularised (README, "Human3.6M at full protocol")."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


class FrameEncoder(nn.Module):
    """Per-frame joint embedding: Linear(J * d -> 2C), BatchNorm, LeakyReLU(0.2), Dropout.

    Released code: ``Simplemlp`` (1x1 conv, BN, LeakyReLU 0.2, dropout). Input (N, J * d), output (N, 2C).
    """

    def __init__(self, in_features: int, out_features: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(F.leaky_relu(self.bn(self.fc(x)), 0.2))


class SpatialMLP(nn.Module):
    """Shared per-frame MLP: one residual block of width 2C (two Linear-BN-LeakyReLU-Dropout), then a
    projection to C. Released code: ``FCBlock(channel_out=C, linear_size=2C, block_num=1)``.
    Input (N, 2C), output (N, C)."""

    def __init__(self, width: int, out_features: int, dropout: float):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(width, width), nn.BatchNorm1d(width)
        self.fc2, self.bn2 = nn.Linear(width, width), nn.BatchNorm1d(width)
        self.proj = nn.Linear(width, out_features)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.leaky_relu(self.bn1(self.fc1(x)), 0.2))
        y = self.drop(F.leaky_relu(self.bn2(self.fc2(y)), 0.2))
        return self.proj(x + y)


class Attention(nn.Module):
    """Multi-head self-attention computed by ``scaled_dot_product_attention``. The released code's q, k, v
    projections (three ``nn.Linear(C, C)``) are one ``qkv`` Linear(C, 3C) here: the same parameters, one
    larger matrix product. ``forward(qkv (B, T, 3C)) -> (B, T, C)`` (after the ``out`` projection)."""

    def __init__(self, channels: int, heads: int, attn_dropout: float):
        super().__init__()
        self.heads, self.attn_dropout = heads, attn_dropout
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, t, c3 = qkv.shape
        q, k, v = qkv.view(b, t, 3, self.heads, c3 // (3 * self.heads)).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v, self.attn_dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, c3 // 3))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
    """``scaled_dot_product_attention`` of (B, heads, Tq, d) queries over (B, heads, T, d) keys and values ->
    (B, heads, Tq, d). Under CPU bf16 autocast (training/deepspeed/cpu_bf16.json) the projections around it run
    in bf16 and the attention itself in fp32, whose CPU kernel's backward is about 10 times faster than its
    bf16 one (measured with torch 2.13 on 2 cores, C 256, 27 frames: the bf16 backward took half the step)."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)


class Block(nn.Module):
    """Pre-norm transformer layer: x + Drop(Attn(LN(x))), then x + Drop(FF(LN(x))) with FF = Linear(C, H),
    ReLU, Dropout, Linear(H, C) (released ``EncoderLayer`` / ``PositionwiseFeedForward``).
    ``forward(x (B, T, C), qkv=None)``: ``qkv`` (B, T, 3C), when given, is ``attn.qkv(norm1(x))``
    computed by the caller."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.channels
        self.norm1 = nn.LayerNorm(c, eps=1e-6)
        self.attn = Attention(c, cfg.heads, cfg.attn_dropout)
        self.norm2 = nn.LayerNorm(c, eps=1e-6)
        self.ff1, self.ff2 = nn.Linear(c, cfg.hidden), nn.Linear(cfg.hidden, c)
        self.drop = nn.Dropout(cfg.dropout)

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., 3C): the attention's input projection of the normalised x."""
        return self.attn.qkv(self.norm1(x))

    def forward(self, x: torch.Tensor, qkv: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.qkv(x) if qkv is None else qkv))
        return x + self.drop(self.ff2(self.drop(F.relu(self.ff1(self.norm2(x))))))


class Stack(nn.Module):
    """``n`` pre-norm layers and a final LayerNorm. ``forward(x (B, T, C), qkv=None)`` -> (B, T, C);
    ``qkv`` is passed to the first layer (see :class:`Block`)."""

    def __init__(self, cfg: ModelConfig, n: int):
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg) for _ in range(n))
        self.norm = nn.LayerNorm(cfg.channels, eps=1e-6)

    def forward(self, x: torch.Tensor, qkv: torch.Tensor | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, qkv if i == 0 else None)
        return self.norm(x)


class TemporalTransformer(nn.Module):
    """Shared temporal transformer: learned positional embedding (frames, C) added at each token's frame
    index, then a :class:`Stack` of ``layers`` layers. ``forward(x (B, V, C), frame_idx (B, V) | None)``;
    without indices the V tokens are frames 0..V-1."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.randn(cfg.frames, cfg.channels))
        self.stack = Stack(cfg, cfg.layers)

    def forward(self, x: torch.Tensor, frame_idx: torch.Tensor | None = None) -> torch.Tensor:
        pos = self.pos_emb[: x.shape[1]] if frame_idx is None else F.embedding(frame_idx, self.pos_emb)
        return self.stack(x + pos)


class Shared(nn.Module):
    """The shared body (the bulk of the parameters): ``spatial`` MLP per frame, ``temporal`` transformer,
    and ``norm`` (the released ``encoder_LN``). ``forward(h (B, V, 2C), frame_idx (B, V) | None)``
    -> (B, V, C); works on full unmasked sequences when ``frame_idx`` is None."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.spatial = SpatialMLP(2 * cfg.channels, cfg.channels, cfg.dropout)
        self.temporal = TemporalTransformer(cfg)
        self.norm = nn.LayerNorm(cfg.channels, eps=1e-6)

    def forward(self, h: torch.Tensor, frame_idx: torch.Tensor | None = None) -> torch.Tensor:
        b, v, _ = h.shape
        x = self.spatial(h.reshape(b * v, -1)).view(b, v, -1)
        return self.norm(self.temporal(x, frame_idx))


class Decoder(nn.Module):
    """One-block decoder: a :class:`Stack` of ``decoder_layers`` layers, then the head BatchNorm(C) and
    Linear(C -> J * d) per frame (released ``Transformer_dec`` and ``fcn_dec2d``/``fcn_dec3d``).

    ``forward(feats (B, V, C), vis_idx (B, V), token (C,), pos (T, C)) -> (B, T, J, d)``: visible frames
    enter as feature + ``pos``, masked frames as ``token`` + ``pos`` (MAE-style). The masked frames' first
    attention projection depends on the frame only, so it is computed once per frame, not per sample.
    """

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        self.dim, self.joints = dim, cfg.joints
        self.stack = Stack(cfg, cfg.decoder_layers)
        self.head_bn = nn.BatchNorm1d(cfg.channels)
        self.head = nn.Linear(cfg.channels, cfg.joints * dim)

    def forward(self, feats: torch.Tensor, vis_idx: torch.Tensor, token: torch.Tensor, pos: torch.Tensor):
        (b, v, c), t = feats.shape, pos.shape[0]
        idx = vis_idx.unsqueeze(-1)
        x_vis = feats + F.embedding(vis_idx, pos)
        x_tok = token + pos
        first = self.stack.layers[0]
        q_tok, q_vis = first.qkv(x_tok), first.qkv(x_vis)
        x = x_tok.expand(b, t, c).scatter(1, idx.expand(b, v, c), x_vis)
        qkv = q_tok.expand(b, t, 3 * c).scatter(1, idx.expand(b, v, 3 * c), q_vis)
        y = self.head(self.head_bn(self.stack(x, qkv).reshape(b * t, c)))
        return y.view(b, t, self.joints, self.dim)


class MPM(nn.Module):
    """Masked pose modelling network for 2D (d = 2) and 3D (d = 3) poses.

    Submodules: ``encoder_2d``, ``encoder_3d`` (:class:`FrameEncoder`), ``shared`` (:class:`Shared`),
    ``decoder_2d``, ``decoder_3d`` (:class:`Decoder`); parameters ``mask_token_2d`` (2,), ``mask_token_3d``
    (3,) (learned values for spatially masked joints), ``temporal_mask_token`` (C,) and ``dec_pos_emb``
    (frames, C) (masked frames re-enter the decoders as token + decoder positional embedding, MAE-style).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c, j = cfg.channels, cfg.joints
        self.encoder_2d = FrameEncoder(2 * j, 2 * c, cfg.dropout)
        self.encoder_3d = FrameEncoder(3 * j, 2 * c, cfg.dropout)
        self.shared = Shared(cfg)
        self.decoder_2d = Decoder(cfg, 2)
        self.decoder_3d = Decoder(cfg, 3)
        self.mask_token_2d = nn.Parameter(torch.randn(2))
        self.mask_token_3d = nn.Parameter(torch.randn(3))
        self.temporal_mask_token = nn.Parameter(torch.randn(c))
        self.dec_pos_emb = nn.Parameter(torch.randn(cfg.frames, c))

    def _check(self, x: torch.Tensor, dim: int, name: str) -> None:
        if x.ndim != 4 or x.shape[2] != self.cfg.joints or x.shape[3] != dim:
            raise ValueError(f"{name}: expected shape (B, T, {self.cfg.joints}, {dim}), got {tuple(x.shape)}")
        if x.shape[1] > self.cfg.frames:
            raise ValueError(f"{name}: {x.shape[1]} frames exceed model.frames={self.cfg.frames}")

    def encode(self, pose2d: torch.Tensor) -> torch.Tensor:
        """Features of full, unmasked 2D sequences: (B, T, J, 2) (x, y only) -> (B, T, C)."""
        self._check(pose2d, 2, "pose2d")
        b, t = pose2d.shape[:2]
        h = self.encoder_2d(pose2d.reshape(b * t, -1)).view(b, t, -1)
        return self.shared(h)

    def _embed(self, x: torch.Tensor, masks: Masks) -> torch.Tensor:
        """Visible frames of x (B, T, J, d), masked joints replaced by the token, -> (B, V, 2C)."""
        b, _, j, d = x.shape
        vis_idx = masks.visible
        v = vis_idx.shape[1]
        xv = torch.gather(x, 1, vis_idx.view(b, v, 1, 1).expand(b, v, j, d))
        mv = torch.gather(masks.joints, 1, vis_idx.view(b, v, 1).expand(b, v, j))
        token = self.mask_token_2d if d == 2 else self.mask_token_3d
        xv = torch.where(mv.unsqueeze(-1), token.to(xv.dtype), xv)
        encoder = self.encoder_2d if d == 2 else self.encoder_3d
        return encoder(xv.reshape(b * v, j * d)).view(b, v, -1)

    def forward(
        self,
        pose2d: torch.Tensor | None,
        mask2d: Masks | None,
        pose3d: torch.Tensor | None,
        mask3d: Masks | None,
        lift: bool = False,
    ) -> tuple[torch.Tensor | None, ...]:
        """Reconstruct masked 2D and/or 3D sequences (one pass of the shared body per modality).

        Args:
            pose2d: (B2, T, J, 2) or None; pose3d: (B3, T, J, 3) or None (same T).
            mask2d, mask3d: :class:`~pretrain.masking.Masks` of each input: ``joints`` (B, T, J) True entries
                are replaced by the mask token; ``visible`` (B, V) lists each sample's visible frames; the
                other frames are dropped before the encoder.
            lift: also decode the masked 2D input's features with the 3D decoder (the released code's
                ``output_3D_masklift``, its "third path": masked 2D in, every frame's 3D out).
        Returns:
            (rec2d (B2, T, J, 2) | None, rec3d (B3, T, J, 3) | None), every frame reconstructed; with
            ``lift`` a third element, lift3d (B2, T, J, 3) | None.
        Raises:
            ValueError: on shape mismatches or when both inputs are None.
        """
        parts = [(x, m, d) for x, m, d in ((pose2d, mask2d, 2), (pose3d, mask3d, 3)) if x is not None]
        if not parts:
            raise ValueError("MPM.forward needs pose2d or pose3d")
        for x, _, d in parts:
            self._check(x, d, f"pose{d}d")
        t = parts[0][0].shape[1]
        if any(x.shape[1] != t for x, _, _ in parts):
            raise ValueError("pose2d and pose3d must have the same number of frames")
        out: dict[int, torch.Tensor] = {}
        lifted = None
        for x, m, d in parts:  # one pass per modality: batch norm sees one input distribution at a time
            feats = self.shared(self._embed(x, m), m.visible)
            token, pos = self.temporal_mask_token.to(feats.dtype), self.dec_pos_emb[:t]
            decoder = self.decoder_2d if d == 2 else self.decoder_3d
            out[d] = decoder(feats, m.visible, token, pos)
            if lift and d == 2:
                lifted = self.decoder_3d(feats, m.visible, token, pos)
        if lift:
            return out.get(2), out.get(3), lifted
        return out.get(2), out.get(3)

    def lift(self, pose2d: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """2D-to-3D lifting by the pretraining network itself: whole 2D sequences (B, T, J, 2), every frame
        visible, through the 2D encoder, the shared body and the 3D decoder -> (B, T, J, 3), the 3D input's
        units (metres, root-relative). ``hidden`` (B, T, J) bool, optional: joints replaced by the 2D mask
        token (frames without usable 2D). The pretraining objective's lifting term from complete 2D, and a
        measure of what pretraining taught about depth before any finetuning.

        Raises:
            ValueError: wrong shape.
        """
        self._check(pose2d, 2, "pose2d")
        if hidden is not None:
            pose2d = torch.where(hidden.unsqueeze(-1), self.mask_token_2d.to(pose2d.dtype), pose2d)
        b, t = pose2d.shape[:2]
        visible = torch.arange(t, device=pose2d.device).expand(b, t)
        feats = self.encode(pose2d)
        return self.decoder_3d(feats, visible, self.temporal_mask_token.to(feats.dtype), self.dec_pos_emb[:t])


def count(module: nn.Module | nn.Parameter) -> int:
    """Number of trainable scalars in a module or parameter."""
    if isinstance(module, nn.Parameter):
        return module.numel()
    return sum(p.numel() for p in module.parameters())


def summary(model: MPM) -> dict[str, int]:
    """Parameter counts per part, grouped as in the released code (see module docstring)."""
    s = model.shared
    parts = {
        "encoder_2d": count(model.encoder_2d),
        "encoder_3d": count(model.encoder_3d),
        "shared": count(s),
        "shared_spatial": count(s.spatial),
        "shared_temporal": count(s.temporal),
        "shared_norm": count(s.norm),
        "decoder_2d": count(model.decoder_2d),
        "decoder_3d": count(model.decoder_3d),
        "tokens": count(model.mask_token_2d) + count(model.mask_token_3d) + count(model.temporal_mask_token),
        "dec_pos_emb": count(model.dec_pos_emb),
    }
    parts["total"] = count(model)
    return parts


def main(argv: list[str] | None = None) -> None:
    """``python -m pretrain.model [--backbone NAME] ... [--arg KEY=VALUE ...] [--summary]``: one JSON line of
    parameter counts. MPM (``--backbone mpm``, the default) at ``--preset``; any other backbone
    (:mod:`pretrain.backbones`) at its released ``--size``; ``--arg`` overrides a size (MPM: a
    :class:`ModelConfig` field; another backbone: a constructor argument, e.g. ``channels=16``, as finetuning's
    ``model.channels`` does). ``--summary`` lists the parts (MPM: :func:`summary`; another backbone: its
    top-level modules and parameters) and ``total``."""
    from pretrain import backbones  # the backbones import this module's attention

    parser = argparse.ArgumentParser(prog="python -m pretrain.model", description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mpm", choices=["mpm", *backbones.NAMES])
    parser.add_argument("--preset", default="mpm", choices=sorted(PRESETS), help="MPM's sizes (--backbone mpm)")
    parser.add_argument("--size", default="full", choices=["full", "lite"], help="another backbone's released size")
    parser.add_argument("--joints", type=int, default=17)
    parser.add_argument("--frames", type=int, default=None, help="default: the preset's or size's")
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a size to override (MPM: a ModelConfig field; another backbone: a constructor argument), repeatable",
    )
    parser.add_argument("--summary", action="store_true", help="print parameter counts per part (JSON)")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--arg {item!r}: expected KEY=VALUE")
        extra[key] = yaml.safe_load(value)
    if args.backbone != "mpm":
        try:
            net = backbones.build(args.backbone, args.size, joints=args.joints, frames=args.frames, **extra)
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
        head = {"backbone": args.backbone, "size": args.size, "arguments": net.arguments}
        if args.summary:
            parts = {name: count(child) for name, child in net.named_children() if count(child)}
            parts |= {name: count(p) for name, p in net.named_parameters(recurse=False)}
            print(json.dumps(head | parts | {"total": count(net)}))
        else:
            print(json.dumps(head | {"parameters": count(net)}))
        return
    overrides = {"joints": args.joints} | ({"frames": args.frames} if args.frames else {}) | extra
    try:
        cfg = preset(args.preset, **overrides)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    model = MPM(cfg)
    if args.summary:
        print(json.dumps(summary(model)))
    else:
        print(json.dumps({"config": asdict(cfg), "parameters": count(model)}))


if __name__ == "__main__":
    main()
