"""Transformer pieces shared by the PoseFormer and DSTformer backbones, in the timm ``vision_transformer`` form
both released codes copy (zczcwh/PoseFormer ``common/model_poseformer.py`` @ 73614198; Walter0807/MotionBERT
``lib/model/DSTformer.py`` @ 20db205a): parameter names ``qkv`` / ``proj`` and ``fc1`` / ``fc2`` as released,
so released state dicts map one to one.

Attention is computed by :func:`pretrain.model.attend` (``scaled_dot_product_attention``, the default scale
``head_dim ** -0.5`` that both references use) instead of the explicit softmax product; attention dropout is
absent, as both references leave it at 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.model import attend


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (timm ``drop_path``): in training, zero each sample (dim 0) of a residual branch with
    probability ``p`` and scale the kept ones by ``1 / (1 - p)``; identity otherwise or when ``p == 0``."""
    if not training or p == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class Mlp(nn.Module):
    """``fc1`` Linear(dim, hidden), GELU, dropout, ``fc2`` Linear(hidden, dim), dropout: (..., dim) -> (..., dim)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of each sequence: ``qkv`` Linear(dim, 3 dim) with bias (both
    references set ``qkv_bias=True``), attention, ``proj`` Linear(dim, dim), dropout.
    ``forward(x (N, L, dim)) -> (N, L, dim)``, the L tokens of each of the N sequences attending to each other."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v).transpose(1, 2).reshape(n, length, dim)
        return self.drop(self.proj(y))
