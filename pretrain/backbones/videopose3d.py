"""VideoPose3D's dilated temporal convolution network (Pavllo et al., "3D human pose estimation in video with
temporal convolutions and semi-supervised training", CVPR 2019), after facebookresearch/VideoPose3D
``common/model.py`` (commit 1afb1ca0f1237776518469876342fc8669d3f6a9; the file last changed in 82297644):
``TemporalModel`` and ``TemporalModelOptimized1f``.

- ``expand_conv``: Conv1d(J * 2 -> C, kernel w_0, no bias) over the frames, ``expand_bn``, ReLU, dropout;
- per further filter width w_i a residual block: Conv1d(C, C, kernel w_i, dilation w_0 * ... * w_{i-1},
  no bias), BN, ReLU, dropout, Conv1d(C, C, 1, no bias), BN, ReLU, dropout, plus the input cropped to the
  output's frames (``layers_conv`` / ``layers_bn``, two of each per block);
- ``shrink``: Conv1d(C -> J * 3, 1).

Batch norms have momentum 0.1 (the reference decays it to 0.001 over training in its ``run.py``; posemill's
loop keeps it). The receptive field is the product of the filter widths: 3,3,3 -> 27, 3,3,3,3 -> 81,
3,3,3,3,3 -> 243 frames, with 8,555,571 / 12,753,971 / 16,952,371 parameters at 17 joints and 1024 channels.

:class:`TemporalModel` convolves whole sequences (T in, T - frames + 1 out); :class:`TemporalModelOptimized1f`
replaces the dilations by strides of the filter widths, which computes only what one output frame needs:
the reference trains it on windows of exactly ``frames`` frames. Both have the same parameters under the same
names, so a state dict of either loads into the other and, on one window, their outputs agree.
``causal``: every convolution looks back only, and output ``i`` is the pose of input frame
``i + frames - 1`` (the window's last frame) instead of its centre.

Parameter names are the reference's, so its checkpoints' ``model_pos`` dicts load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.backbones.base import Backbone

SIZES: dict[str, dict] = {"full": {}}


def filter_widths_for(frames: int) -> list[int]:
    """The reference's filter widths for a receptive field of ``frames`` = 3 ** k frames: k widths of 3."""
    k = round(math.log(frames, 3)) if frames > 1 else 0
    if k < 1 or 3**k != frames:
        raise ValueError(f"videopose3d: {frames} frames is not a power of 3 (27, 81, 243); give filter_widths")
    return [3] * k


class _Temporal(Backbone):
    """Layers of both variants; ``strided`` picks the single-frame one. See the module docstring."""

    protocol = "centre"
    in_features = 2
    strided = False

    def __init__(
        self,
        joints: int = 17,
        frames: int = 243,
        channels: int = 1024,
        dropout: float = 0.25,
        causal: bool = False,
        filter_widths: list[int] | None = None,
    ):
        widths = list(filter_widths) if filter_widths else filter_widths_for(frames)
        if any(w < 1 or w % 2 == 0 for w in widths):
            raise ValueError(f"videopose3d: filter widths must be odd, got {widths}")
        if math.prod(widths) != frames:
            raise ValueError(f"videopose3d: filter widths {widths} give {math.prod(widths)} frames, not {frames}")
        super().__init__(
            dict(
                joints=joints,
                frames=frames,
                channels=channels,
                dropout=dropout,
                causal=causal,
                filter_widths=widths,
            )
        )
        self.filter_widths, self.causal = widths, causal
        self.drop = nn.Dropout(dropout)
        stride = dict(stride=widths[0]) if self.strided else {}
        self.expand_conv = nn.Conv1d(joints * 2, channels, widths[0], bias=False, **stride)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        convs, norms = [], []
        self.dilations = []  # the dilation of each block's wide convolution: w_0 * ... * w_{i-1}
        for w in widths[1:]:
            self.dilations.append(math.prod(widths[: len(self.dilations) + 1]))
            spacing = dict(stride=w) if self.strided else dict(dilation=self.dilations[-1])
            convs += [nn.Conv1d(channels, channels, w, bias=False, **spacing)]
            convs += [nn.Conv1d(channels, channels, 1, bias=False)]
            norms += [nn.BatchNorm1d(channels, momentum=0.1), nn.BatchNorm1d(channels, momentum=0.1)]
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(norms)
        self.shrink = nn.Conv1d(channels, joints * 3, 1)

    def _residual(self, h: torch.Tensor, block: int) -> torch.Tensor:
        """The block's input cropped (or, strided, subsampled) to the frames its output has."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, J, 2) normalised 2D -> (B, T - frames + 1, J, 3) (see the module docstring)."""
        self.check_input(x, exact=self.strided)
        b, t, j, _ = x.shape
        h = self.drop(F.relu(self.expand_bn(self.expand_conv(x.reshape(b, t, j * 2).transpose(1, 2)))))
        for i in range(len(self.dilations)):
            res = self._residual(h, i)
            h = self.drop(F.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](h))))
            h = res + self.drop(F.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](h))))
        return self.shrink(h).transpose(1, 2).reshape(b, -1, j, 3)


class TemporalModel(_Temporal):
    """The reference ``TemporalModel``: dilated convolutions over any number of frames T >= ``frames``,
    (B, T, J, 2) -> (B, T - frames + 1, J, 3). Arguments: ``joints`` J (in and out), ``frames`` the receptive
    field (filter widths 3, 3, ... by default), ``channels`` (1024), ``dropout`` (0.25), ``causal``,
    ``filter_widths`` (odd, product ``frames``)."""

    def _residual(self, h: torch.Tensor, block: int) -> torch.Tensor:
        pad = (self.filter_widths[block + 1] - 1) * self.dilations[block] // 2
        shift = pad if self.causal else 0
        return h[:, :, pad + shift : h.shape[2] - pad + shift]


class TemporalModelOptimized1f(_Temporal):
    """The reference ``TemporalModelOptimized1f``: strided convolutions over windows of exactly ``frames``
    frames, (B, frames, J, 2) -> (B, 1, J, 3), the weights of :class:`TemporalModel` (same arguments)."""

    strided = True

    def _residual(self, h: torch.Tensor, block: int) -> torch.Tensor:
        w = self.filter_widths[block + 1]
        return h[:, :, (w // 2 if self.causal else 0) + w // 2 :: w]
