"""Spatio-temporal masks for masked pose modelling, drawn independently for every sample of a batch.

Modes (MPM paper, section 3 and its masking ablation; released ``trainutils/pretrain_epoch.py``
``MaskGen`` / ``TubeMaskGen``):

- ``spatiotemporal``: ``int(T * frame_ratio)`` whole frames are masked (dropped from the encoder, MAE-style)
  and, in every frame, ``joints_masked`` joints chosen anew per frame are replaced by the mask token.
  MPM's optimum, 5 of 17 joints and 60% of frames, masks 1 - 0.4 * 12/17 = 71.8% of all joints.
- ``tube``: the same ``joints_masked`` joints in every frame of a sample, plus the frame masking.
- ``temporal``: frame masking only.

The number of masked frames is the same for every sample, so the visible frames of a batch form a
rectangular (B, V) index tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("spatiotemporal", "tube", "temporal")


@dataclass
class MaskConfig:
    """``mode`` one of :data:`MODES`; ``joints_masked`` joints per frame (per sample for ``tube``);
    ``frame_ratio`` fraction of frames masked, in [0, 1)."""

    mode: str = "spatiotemporal"
    joints_masked: int = 5
    frame_ratio: float = 0.6

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mask.mode={self.mode!r} is not one of {MODES}")
        if not 0.0 <= self.frame_ratio < 1.0:
            raise ValueError(f"mask.frame_ratio={self.frame_ratio} must be in [0, 1)")
        if self.joints_masked < 0:
            raise ValueError(f"mask.joints_masked={self.joints_masked} must be >= 0")

    def joint_count(self, joints: int) -> int:
        """Joints masked per frame for a J-joint skeleton (0 in ``temporal`` mode)."""
        if self.mode == "temporal":
            return 0
        if self.joints_masked >= joints:
            raise ValueError(f"mask.joints_masked={self.joints_masked} must be < the {joints} joints")
        return self.joints_masked

    def expected_ratio(self, frames: int, joints: int) -> float:
        """Expected fraction of masked (frame, joint) entries: 1 - (1 - m / T) (1 - k / J)."""
        m = int(frames * self.frame_ratio)
        return 1.0 - (1.0 - m / frames) * (1.0 - self.joint_count(joints) / joints)


@dataclass
class Masks:
    """``joints`` (B, T, J) bool: joints replaced by the mask token; ``frames`` (B, T) bool: masked frames;
    ``visible`` (B, V) int64: the unmasked frame indices of each sample, ascending."""

    joints: torch.Tensor
    frames: torch.Tensor
    visible: torch.Tensor

    def to(self, device: torch.device | str) -> Masks:
        return Masks(self.joints.to(device), self.frames.to(device), self.visible.to(device))

    def masked(self) -> torch.Tensor:
        """(B, T, J) bool: every entry hidden from the network (masked joint or masked frame)."""
        return self.joints | self.frames.unsqueeze(-1)


def make_masks(batch: int, frames: int, joints: int, cfg: MaskConfig, generator: torch.Generator) -> Masks:
    """Draw masks for ``batch`` samples of ``frames`` x ``joints`` on the generator's device.

    Raises:
        ValueError: when the settings leave no visible frame or mask every joint.
    """
    device = generator.device
    n_masked = int(frames * cfg.frame_ratio)
    if n_masked >= frames:
        raise ValueError(f"mask.frame_ratio={cfg.frame_ratio} leaves no visible frame of {frames}")
    k = cfg.joint_count(joints)
    order = torch.rand(batch, frames, generator=generator, device=device).argsort(dim=1)
    visible = order[:, n_masked:].sort(dim=1).values
    frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    frame_mask.scatter_(1, visible, False)
    shape = (batch, frames, joints) if cfg.mode == "spatiotemporal" else (batch, 1, joints)
    joint_mask = torch.zeros(shape, dtype=torch.bool, device=device)
    if k:
        chosen = torch.rand(shape, generator=generator, device=device).topk(k, dim=-1).indices
        joint_mask.scatter_(-1, chosen, True)
    return Masks(joint_mask.expand(batch, frames, joints).contiguous(), frame_mask, visible)
