"""MotionBERT's DSTformer (Zhu et al., "MotionBERT: A Unified Perspective on Learning Human Motion
Representations", ICCV 2023), after Walter0807/MotionBERT ``lib/model/DSTformer.py`` (commit
20db205a2cabec8bb535c91f07124c7e5195a2f9) as its ``lib/utils/learning.py`` ``load_backbone`` builds it
(``dim_in=3, dim_out=3``, LayerNorm eps 1e-6; ``drop_rate``, ``attn_drop_rate`` and ``drop_path_rate`` left at 0).

- ``joints_embed`` Linear(3 -> C) per joint of (x, y, confidence), plus ``pos_embed`` (1, J, C) and
  ``temp_embed`` (1, frames, 1, C) (the first T rows), dropout;
- ``layers`` depths of two parallel blocks: ``blocks_st`` (spatial attention over the J joints of each frame,
  MLP, then temporal attention over the T frames of each joint, MLP) and ``blocks_ts`` (temporal first),
  each step pre-norm with a residual; their outputs fused per token by learned weights
  ``softmax(ts_attn[i](concat(x_st, x_ts)))`` (Linear(2C -> 2), initialised to weight 0, bias 0.5: equal
  weights);
- ``norm``, then the representation head ``pre_logits`` (``fc`` Linear(C -> dim_rep), tanh) and ``head``
  Linear(dim_rep -> 3) per joint and frame.

Sizes (``SIZES``): ``full`` is ``configs/pose3d/MB_ft_h36m.yaml`` / ``configs/pretrain/MB_pretrain.yaml``
(commit c5db08c5ffaf3027a8a2f9ff465449d1e0b6d7e4): C 512, MLP ratio 2, depth 5, 8 heads, dim_rep 512, 243
frames: 42,466,317 parameters at 17 joints. ``lite`` is ``configs/pretrain/MB_lite.yaml`` /
``configs/pose3d/MB_ft_h36m_global_lite.yaml`` (same commit): C 256, MLP ratio 4, otherwise the same:
16,001,549 parameters.

Attention runs through ``scaled_dot_product_attention`` (:mod:`pretrain.backbones.layers`); the temporal
attention is the same module applied to the tokens regrouped per joint, as the reference's
``forward_temporal`` regroups q, k and v. Parameter names are the reference's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pretrain.backbones.base import Backbone
from pretrain.backbones.layers import Mlp, SelfAttention, drop_path

SIZES: dict[str, dict] = {
    "full": dict(channels=512, mlp_ratio=2.0, layers=5, heads=8, dim_rep=512, frames=243),
    "lite": dict(channels=256, mlp_ratio=4.0, layers=5, heads=8, dim_rep=512, frames=243),
}


class Block(nn.Module):
    """One stream's layer (reference ``Block``, ``st_mode`` ``stage_st`` / ``stage_ts`` as ``order``
    ``"st"`` / ``"ts"``): spatial (``attn_s``, ``mlp_s``) and temporal (``attn_t``, ``mlp_t``) steps in that
    order, each x + DropPath(f(LN(x))). ``forward(x (B * T, J, C), frames T) -> (B * T, J, C)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, drop_path: float, order: str):
        super().__init__()
        self.order, self.drop_path = order, drop_path
        hidden = int(dim * mlp_ratio)
        self.norm1_s, self.norm1_t = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn_s, self.attn_t = SelfAttention(dim, heads, dropout), SelfAttention(dim, heads, dropout)
        self.norm2_s, self.norm2_t = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.mlp_s, self.mlp_t = Mlp(dim, hidden, dropout), Mlp(dim, hidden, dropout)

    def _add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + drop_path(y, self.drop_path, self.training)

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        x = self._add(x, self.attn_s(self.norm1_s(x)))
        return self._add(x, self.mlp_s(self.norm2_s(x)))

    def _temporal(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bt, j, c = x.shape
        h = self.norm1_t(x).view(bt // frames, frames, j, c).transpose(1, 2).reshape(-1, frames, c)
        h = self.attn_t(h).view(bt // frames, j, frames, c).transpose(1, 2).reshape(bt, j, c)
        x = self._add(x, h)
        return self._add(x, self.mlp_t(self.norm2_t(x)))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if self.order == "st":
            return self._temporal(self._spatial(x), frames)
        return self._spatial(self._temporal(x, frames))


class DSTformer(Backbone):
    """Arguments: ``joints`` J, ``frames`` (``maxlen``, the longest clip), ``channels`` C (``dim_feat``),
    ``layers`` (``depth``), ``heads`` (``num_heads``), ``mlp_ratio``, ``dim_rep``, ``dropout`` (``drop_rate``,
    0), ``drop_path`` (``drop_path_rate``, 0); defaults are the ``full`` size.
    ``forward(x (B, T, J, 3) normalised x, y and confidence) -> (B, T, J, 3)``, T <= ``frames``."""

    protocol = "seq2seq"
    in_features = 3

    def __init__(
        self,
        joints: int = 17,
        frames: int = 243,
        channels: int = 512,
        layers: int = 5,
        heads: int = 8,
        mlp_ratio: float = 2.0,
        dim_rep: int = 512,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__(
            dict(
                joints=joints,
                frames=frames,
                channels=channels,
                layers=layers,
                heads=heads,
                mlp_ratio=mlp_ratio,
                dim_rep=dim_rep,
                dropout=dropout,
                drop_path=drop_path,
            )
        )
        rates = torch.linspace(0, drop_path, layers).tolist()
        self.joints_embed = nn.Linear(self.in_features, channels)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks_st = nn.ModuleList(Block(channels, heads, mlp_ratio, dropout, r, "st") for r in rates)
        self.blocks_ts = nn.ModuleList(Block(channels, heads, mlp_ratio, dropout, r, "ts") for r in rates)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(channels, dim_rep), act=nn.Tanh()))
        self.head = nn.Linear(dim_rep, 3)
        self.temp_embed = nn.Parameter(torch.zeros(1, frames, 1, channels))
        self.pos_embed = nn.Parameter(torch.zeros(1, joints, channels))
        self._init_weights()
        self.ts_attn = nn.ModuleList(nn.Linear(2 * channels, 2) for _ in range(layers))
        for fuse in self.ts_attn:
            nn.init.zeros_(fuse.weight)
            nn.init.constant_(fuse.bias, 0.5)

    def _init_weights(self) -> None:
        """The reference's: truncated normal (std 0.02, cut at +-2) for the embeddings and every Linear weight,
        zero biases, LayerNorms at weight 1 and bias 0."""
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, J, 3) -> (B, T, J, dim_rep): the motion representation (the reference's ``return_rep``)."""
        self.check_input(x)
        b, t, j, _ = x.shape
        h = self.joints_embed(x) + self.pos_embed[:, None] + self.temp_embed[:, :t]
        h = self.pos_drop(h.reshape(b * t, j, -1))
        for blk_st, blk_ts, fuse in zip(self.blocks_st, self.blocks_ts, self.ts_attn, strict=True):
            x_st, x_ts = blk_st(h, t), blk_ts(h, t)
            alpha = fuse(torch.cat([x_st, x_ts], dim=-1)).softmax(dim=-1)
            h = x_st * alpha[..., 0:1] + x_ts * alpha[..., 1:2]
        return self.pre_logits(self.norm(h).view(b, t, j, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))
