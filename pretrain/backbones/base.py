"""What every backbone of :mod:`pretrain.backbones` is: an ``nn.Module`` lifting normalised 2D poses to 3D.

- ``forward(x (B, T, J, in_features)) -> (B, T', J, 3)``: ``x`` is normalised 2D (``x / w * 2 - [1, h / w]``,
  DESIGN.md) and, where ``in_features`` is 3, the confidence; the output is metres, root-relative camera
  coordinates when trained by posemill (a converted checkpoint keeps its own units).
  ``protocol == "centre"``: a sliding window of ``frames`` frames gives one pose, ``T' = T - frames + 1``
  (output ``i`` for input frames ``i .. i + frames - 1``, their centre frame; VideoPose3D's "valid"
  convolution). ``protocol == "seq2seq"``: one pose per input frame, ``T' = T <= frames``.
- ``joints``, ``frames``, ``in_features``, ``protocol`` as above, and ``arguments``: the constructor's keyword
  arguments as plain values, from which a checkpoint rebuilds the network.
"""

from __future__ import annotations

import torch
from torch import nn

PROTOCOLS = ("centre", "seq2seq")


class Backbone(nn.Module):
    """Base of the backbones: stores ``arguments`` and ``joints`` / ``frames``, and checks inputs."""

    protocol: str = "centre"
    in_features: int = 2

    def __init__(self, arguments: dict):
        super().__init__()
        self.arguments = dict(arguments)
        self.joints: int = arguments["joints"]
        self.frames: int = arguments["frames"]
        if self.joints < 1 or self.frames < 1:
            raise ValueError(f"{type(self).__name__}: joints and frames must be >= 1, got {self.joints}, {self.frames}")

    def check_input(self, x: torch.Tensor, exact: bool = False) -> None:
        """Raise ValueError unless ``x`` is (B, T, joints, in_features) with ``T >= frames`` for a centre model
        (``T == frames`` with ``exact``) and ``T <= frames`` for a sequence-to-sequence one."""
        name = type(self).__name__
        if x.ndim != 4 or x.shape[2] != self.joints or x.shape[3] != self.in_features:
            raise ValueError(
                f"{name} expects input of shape (B, T, {self.joints}, {self.in_features}), got {tuple(x.shape)}"
            )
        t = x.shape[1]
        if self.protocol == "seq2seq" and not 1 <= t <= self.frames:
            raise ValueError(f"{name}: {t} frames, expected 1..{self.frames}")
        if self.protocol == "centre" and (t != self.frames if exact else t < self.frames):
            raise ValueError(f"{name}: {t} frames, expected {'' if exact else 'at least '}{self.frames}")
