"""A backbone of :mod:`pretrain.backbones` (VideoPose3D, SimpleBaseline3D, PoseFormer, DSTformer) with the
interface of :class:`finetune.model.Lifter` that finetuning and evaluation use, so that it trains through the
same loop, loss and data and is evaluated by the same protocols:

- ``forward(pose2d, joint_mask=None) -> (centre, sequence)`` for :func:`finetune.model.lifting_loss`: a
  centre-frame backbone gives its one pose per window and no sequence (None: the loss is the centre term),
  a sequence-to-sequence one (DSTformer) every frame's pose and, as centre, the window's centre frame;
- ``frame_features`` / ``centre_from_features`` (:class:`finetune.windows.CentrePredictor`): a trivial
  per-frame stage (each frame's input channels) and the backbone on each window, which is how these
  networks predict a frame (VideoPose3D's single-frame model, PoseFormer's window, Martinez' frame);
- ``predict_centre``, ``predict_clip`` (every frame of a clip: the backbone itself for a sequence model, each
  frame's centred window inside the clip, edges repeated, for a centre-frame one);
- ``frames``, ``joint_set``, ``joints``, ``in_features`` (2: x, y; 3: and the confidence, DSTformer), ``protocol`` (the
  backbone's own evaluation protocol), ``name`` and ``backbone`` (whose ``arguments`` a checkpoint records);
- ``refiner``: None, or MPM's refine head (:class:`finetune.refine.RefineHead`) once a refine stage attached it.

Inputs are normalised 2D (B, T, J, C >= ``in_features``), extra channels ignored; outputs metres,
root-relative camera coordinates. Occluded-joint inputs (a joint mask) need MPM's learned mask token, which
these networks do not have: they are refused.
"""

from __future__ import annotations

import torch
from torch import nn

from ingest.skeleton import H36M16, H36M17
from pretrain.backbones import Backbone


def _require_eval(module: nn.Module, name: str) -> None:
    if module.training:
        raise RuntimeError(f"BackboneLifter.{name} is evaluation and needs evaluation mode (.eval())")


class BackboneLifter(nn.Module):
    """``backbone`` (built by :func:`pretrain.backbones.build`, registry ``name``) as a lifter of windows of
    ``backbone.frames`` frames.

    Raises:
        ValueError: joints other than 16 / 17 (the Human3.6M joint sets the pipeline lifts); a causal backbone
            (VideoPose3D's ``causal``: its output is the window's last frame, not its centre).
    """

    def __init__(self, name: str, backbone: Backbone):
        super().__init__()
        if backbone.joints not in (16, 17):
            raise ValueError(f"lifting supports the Human3.6M 17- or 16-joint sets, not {backbone.joints} joints")
        if backbone.arguments.get("causal"):
            raise ValueError(
                f"a causal {name} predicts the last frame of its window; centre-frame lifting needs causal=False"
            )
        self.name, self.backbone, self.joints = name, backbone, backbone.joints
        self.frames, self.in_features, self.protocol = backbone.frames, backbone.in_features, backbone.protocol
        self.joint_set = H36M17 if backbone.joints == 17 else H36M16
        self.refiner = None  # MPM's refine head (finetune.refine), attached by a refine stage

    def _inputs(self, pose2d: torch.Tensor, shape: str = "(B, T, J, C)") -> torch.Tensor:
        """The channels the backbone reads of ``pose2d`` (``shape``, C >= ``in_features``)."""
        if pose2d.ndim != shape.count(",") + 1 or pose2d.shape[-1] < self.in_features:
            raise ValueError(
                f"{self.name} lifter expects pose2d of shape {shape}, C >= {self.in_features}, "
                f"got {tuple(pose2d.shape)}"
            )
        return pose2d[..., : self.in_features]

    def forward(
        self, pose2d: torch.Tensor, joint_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, ``frames``, J, C) windows -> (centre (B, J, 3), sequence (B, T, J, 3) or None for a centre-frame
        backbone), metres, root-relative.

        Raises:
            ValueError: a ``joint_mask`` (no mask token), or a wrong shape.
        """
        if joint_mask is not None:
            raise ValueError(
                f"the {self.name} backbone has no mask token for occluded joints (MPM's lifter has): "
                "occluded-input training and completion evaluation need model.backbone=mpm"
            )
        x = self._inputs(pose2d)
        if x.shape[1] != self.frames:
            raise ValueError(f"{self.name} lifter expects windows of {self.frames} frames, got {x.shape[1]}")
        out = self.backbone(x)
        if self.protocol == "centre":
            return out[:, 0], None
        return out[:, self.frames // 2], out

    def frame_features(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(N, J, C) frames -> (N, J, ``in_features``): the input channels the backbone reads (evaluation mode)."""
        _require_eval(self, "frame_features")
        return self._inputs(pose2d, "(N, J, C)")

    def centre_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, ``frames``, J, ``in_features``) windows -> (B, J, 3): the centre frame's pose (evaluation mode)."""
        _require_eval(self, "centre_from_features")
        return self(features)[0]

    def predict_centre(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, ``frames``, J, C) windows -> (B, J, 3), as :meth:`finetune.model.Lifter.predict_centre`."""
        return self.centre_from_features(self.frame_features(pose2d.flatten(0, 1)).view(*pose2d.shape[:3], -1))

    def predict_clip(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, T, J, C) clips -> (B, T, J, 3), every frame's pose (sequence-to-sequence evaluation). A centre-frame
        backbone predicts each frame from the window centred on it inside its clip, the clip's first and last
        frames repeated past its ends (one clip at a time, bounding the windows' memory)."""
        x = self._inputs(pose2d)
        if self.protocol == "seq2seq":
            return self.backbone(x)
        pad = self.frames // 2
        out = []
        for clip in x:
            padded = torch.cat([clip[:1].expand(pad, -1, -1), clip, clip[-1:].expand(pad, -1, -1)])
            windows = padded.unfold(0, self.frames, 1).permute(0, 3, 1, 2)  # (T, frames, J, C)
            out.append(self.backbone(windows.contiguous())[:, 0])
        return torch.stack(out)
