"""PoseFormer (Zheng et al., "3D Human Pose Estimation with Spatial and Temporal Transformers", ICCV 2021),
after zczcwh/PoseFormer ``common/model_poseformer.py`` (commit 73614198e59ed1aedc6c37ff4d2c11df03bc3f8f) class
``PoseTransformer`` as ``run_poseformer.py`` (commit 3d1341d7214626528cff0ce6cd3b93b656908560) builds it:
``embed_dim_ratio=32, depth=4, num_heads=8, mlp_ratio=2, qkv_bias=True, drop_path_rate=0.1``.

- spatial transformer, per frame over its J joint tokens: ``spatial_patch_to_embedding`` Linear(2 -> r)
  per joint, plus ``spatial_pos_embed`` (1, J, r), dropout, ``layers`` pre-norm blocks of width r,
  ``spatial_norm``;
- temporal transformer over the T frame tokens (each the J joint features concatenated, width r * J):
  ``temporal_pos_embed`` (1, T, r * J), dropout, ``layers`` blocks, ``temporal_norm``;
- ``weighted_mean``: Conv1d(T -> 1, 1), a learned weighted mean over the frames, then ``head``: LayerNorm
  (eps 1e-5, the reference's plain ``nn.LayerNorm``; every other norm has eps 1e-6) and Linear(r * J -> J * 3).

Blocks are timm's: x + DropPath(Attn(LN(x))), x + DropPath(MLP(LN(x))), MLP hidden width ``mlp_ratio`` times
the block's, GELU; stochastic depth rising linearly from 0 to ``drop_path`` over the ``layers`` blocks (each
spatial block and its temporal twin at the same rate). At 81 frames and 17 joints: 9,602,885 parameters.

Parameter names are the reference's in lower case (``Spatial_blocks`` -> ``spatial_blocks``, ...; the
checkpoint converter's table), with ``blocks`` / ``head`` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from pretrain.backbones.base import Backbone
from pretrain.backbones.layers import Mlp, SelfAttention, drop_path

SIZES: dict[str, dict] = {"full": {}}


class Block(nn.Module):
    """timm's pre-norm transformer block (``norm1``, ``attn``, ``norm2``, ``mlp``): (N, L, dim) -> (N, L, dim)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, drop_path: float):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class PoseFormer(Backbone):
    """Arguments: ``joints`` J, ``frames`` T (81; the reference also trains 9 and 27), ``channels`` r
    (``embed_dim_ratio``, 32), ``layers`` (``depth``, 4), ``heads`` (8), ``mlp_ratio`` (2), ``dropout``
    (``drop_rate``, 0), ``drop_path`` (``drop_path_rate``, 0.1).
    ``forward(x (B, T, J, 2)) -> (B, 1, J, 3)``, the centre frame's pose from exactly T frames."""

    protocol = "centre"
    in_features = 2

    def __init__(
        self,
        joints: int = 17,
        frames: int = 81,
        channels: int = 32,
        layers: int = 4,
        heads: int = 8,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        drop_path: float = 0.1,
    ):
        super().__init__(
            dict(
                joints=joints,
                frames=frames,
                channels=channels,
                layers=layers,
                heads=heads,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                drop_path=drop_path,
            )
        )
        width = channels * joints
        rates = torch.linspace(0, drop_path, layers).tolist()
        self.spatial_patch_to_embedding = nn.Linear(2, channels)
        self.spatial_pos_embed = nn.Parameter(torch.zeros(1, joints, channels))
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, frames, width))
        self.pos_drop = nn.Dropout(dropout)
        self.spatial_blocks = nn.ModuleList(Block(channels, heads, mlp_ratio, dropout, r) for r in rates)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout, r) for r in rates)
        self.spatial_norm = nn.LayerNorm(channels, eps=1e-6)
        self.temporal_norm = nn.LayerNorm(width, eps=1e-6)
        self.weighted_mean = nn.Conv1d(frames, 1, kernel_size=1)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, joints * 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x, exact=True)
        b, t, j, _ = x.shape
        h = self.pos_drop(self.spatial_patch_to_embedding(x.reshape(b * t, j, 2)) + self.spatial_pos_embed)
        for block in self.spatial_blocks:
            h = block(h)
        h = self.pos_drop(self.spatial_norm(h).reshape(b, t, -1) + self.temporal_pos_embed)
        for block in self.blocks:
            h = block(h)
        return self.head(self.weighted_mean(self.temporal_norm(h))).view(b, 1, j, 3)
