"""Martinez et al.'s residual MLP ("A simple yet effective baseline for 3d human pose estimation", ICCV 2017),
after the authors' TensorFlow code una-dinosauria/3d-pose-baseline ``src/linear_model.py`` (commit
12377210b78f055ec79e83e8e77e55df796cf584), with the parameter names of its common PyTorch port
weigq/3d_pose_baseline_pytorch ``src/model.py`` (commit 3043ba49c8cacc162b18319d7e8298f94eea41f2):

- ``w1`` Linear(J * 2 -> C), ``batch_norm1``, ReLU, dropout;
- ``layers`` residual blocks (``linear_stages``): x + Drop(ReLU(BN(Linear(Drop(ReLU(BN(Linear(x)))))))) with
  ``w1`` / ``batch_norm1`` and ``w2`` / ``batch_norm2`` per block;
- ``w2`` Linear(C -> J * 3).

Released size: C = 1024, 2 blocks, dropout 0.5 (keep probability 0.5), batch norm, max-norm. With 16 joints
in and out (Martinez: 16 2D joints, the 16 non-root 3D joints) it has 4,291,632 parameters, as the
reference; posemill's 16 joints are ``H36M16`` (pelvis kept, neck/nose dropped) and the pelvis output is
predicted and then ignored, as the evaluation puts the root at the origin.

Faithful to the TensorFlow code rather than the port, where they differ:

- max-norm (``max_norm=True``): every weight matrix is used as ``tf.clip_by_norm(w, 1)``, i.e. scaled by
  ``min(1, 1 / ||w||_F)`` (its whole Frobenius norm, biases untouched), inside the forward pass: the stored
  variable may grow, the product always uses the clipped matrix and gradients flow through the clip. No
  step after the optimizer is needed (the port drops max-norm);
- batch norm as ``tf.layers.batch_normalization``: eps 1e-3, running averages with decay 0.99 (torch
  momentum 0.01);
- weights and biases drawn as the TF ``kaiming`` initialiser: a normal truncated at 2 standard deviations,
  times ``sqrt(2 / shape[0])`` (the fan-in for a weight, the width for a bias).

One frame at a time: (B, T, J, 2) -> (B, T, J, 3), every frame on its own (``frames`` is 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.backbones.base import Backbone

SIZES: dict[str, dict] = {"full": {}}


def _linear(n_in: int, n_out: int) -> nn.Linear:
    """Linear layer initialised as the TF code's ``kaiming`` (see the module docstring)."""
    layer = nn.Linear(n_in, n_out)
    for p, fan in ((layer.weight, n_in), (layer.bias, n_out)):
        std = math.sqrt(2.0 / fan)
        nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std)
    return layer


def _norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


def clip_by_norm(weight: torch.Tensor) -> torch.Tensor:
    """``tf.clip_by_norm(weight, 1)``: the whole tensor scaled to Frobenius norm at most 1."""
    return weight / torch.linalg.vector_norm(weight).clamp_min(1.0)


def linear(layer: nn.Linear, x: torch.Tensor, max_norm: bool) -> torch.Tensor:
    """``layer(x)``, its weight clipped to norm 1 first when ``max_norm``."""
    return F.linear(x, clip_by_norm(layer.weight) if max_norm else layer.weight, layer.bias)


class ResidualBlock(nn.Module):
    """Two Linear-BN-ReLU-Dropout layers and the identity shortcut (TF ``two_linear``, port ``Linear``)."""

    def __init__(self, channels: int, dropout: float, max_norm: bool):
        super().__init__()
        self.max_norm = max_norm
        self.w1, self.batch_norm1 = _linear(channels, channels), _norm(channels)
        self.w2, self.batch_norm2 = _linear(channels, channels), _norm(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.relu(self.batch_norm1(linear(self.w1, x, self.max_norm))))
        y = self.drop(F.relu(self.batch_norm2(linear(self.w2, y, self.max_norm))))
        return x + y


class SimpleBaseline(Backbone):
    """Arguments: ``joints`` J (16 as released, or 17), ``channels`` C (``linear_size``, 1024), ``layers``
    (``num_stage``, 2), ``dropout`` (0.5), ``max_norm`` (True), ``frames`` (1: a single-frame model).
    ``forward(x (B, T, J, 2)) -> (B, T, J, 3)`` frame by frame."""

    protocol = "centre"
    in_features = 2

    def __init__(
        self,
        joints: int = 16,
        frames: int = 1,
        channels: int = 1024,
        layers: int = 2,
        dropout: float = 0.5,
        max_norm: bool = True,
    ):
        if frames != 1:
            raise ValueError(f"simplebaseline lifts one frame at a time: frames must be 1, got {frames}")
        super().__init__(
            dict(joints=joints, frames=frames, channels=channels, layers=layers, dropout=dropout, max_norm=max_norm)
        )
        self.max_norm = max_norm
        self.w1, self.batch_norm1 = _linear(joints * 2, channels), _norm(channels)
        self.linear_stages = nn.ModuleList(ResidualBlock(channels, dropout, max_norm) for _ in range(layers))
        self.w2 = _linear(channels, joints * 3)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b, t, j, _ = x.shape
        y = self.drop(F.relu(self.batch_norm1(linear(self.w1, x.reshape(b * t, j * 2), self.max_norm))))
        for stage in self.linear_stages:
            y = stage(y)
        return linear(self.w2, y, self.max_norm).view(b, t, j, 3)
