"""The pretraining objective: lambda_2d * L2D + lambda_3d * L3D (+ lambda_lift * Llift) over masked 2D and
3D reconstructions.

Both terms are MPJPE-style (mean Euclidean distance per joint, VideoPose3D ``loss.mpjpe``) over the whole
reconstructed sequence, as in the released MPM code (``trainutils/pretrain_epoch.py``: ``mpjpe_cal`` of the
output against the full input). Defaults 2.0 and 3.0 are the paper's weights. 2D targets are the
normalised image coordinates of the streamed batch (confidence dropped), 3D targets metres root-relative.

``Llift`` is the released code's "third path" (``opt.third_path``: ``losslift = mpjpe_cal(output_3D_masklift,
input_3D)``): 2D features decoded by the 3D decoder, against the 3D of the same frames, on the windows whose
mixture share grants 2D-3D pairs (batch ``paired``). The features are those of the complete 2D window by
default (``lift_input: complete``, what finetuning feeds the network; a network that only ever saw masked
input reproduces complete 2D worse than masked 2D), or of the masked view (``masked``, as released). It is
what ties the 2D features to depth: without it the 2D and 3D paths share weights but never meet, and the
lifter, which keeps only the 2D path, inherits a representation trained to reproduce 2D.

Frames flagged invalid in the batch (``valid2d`` / ``valid3d`` False) are hidden from the network (every
joint masked) and excluded from the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pretrain.masking import MaskConfig, Masks, make_masks
from pretrain.model import MPM

TASKS = ("both", "split")
LIFT_INPUTS = ("complete", "masked")


@dataclass
class ObjectiveConfig:
    """``lambda_2d`` / ``lambda_3d`` / ``lambda_lift`` loss weights (``lambda_lift`` 0: MPM's two-task
    objective, no lifting term; the released code's third path weighs it 1); ``tasks``: ``both``
    reconstructs every sample from a masked 2D view and from a masked 3D view (the released pretraining
    loop), ``split`` gives each sample one task: the first ``round(B * frac_2d)`` samples of a (shuffled)
    batch are 2D tasks, the rest 3D."""

    lambda_2d: float = 2.0
    lambda_3d: float = 3.0
    lambda_lift: float = 0.0
    lift_input: str = "complete"
    tasks: str = "both"
    frac_2d: float = 0.5

    def __post_init__(self) -> None:
        if self.lift_input not in LIFT_INPUTS:
            raise ValueError(f"objective.lift_input={self.lift_input!r} is not one of {LIFT_INPUTS}")
        if self.tasks not in TASKS:
            raise ValueError(f"objective.tasks={self.tasks!r} is not one of {TASKS}")
        if not 0.0 <= self.frac_2d <= 1.0:
            raise ValueError(f"objective.frac_2d={self.frac_2d} must be in [0, 1]")


def masked_mpjpe(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames and all joints of ||pred - target||_2.

    Args: pred, target (B, T, J, d); valid (B, T) bool. Returns a scalar in the targets' unit; 0 (still
    differentiable) when no frame is valid.
    """
    err = torch.linalg.vector_norm(pred - target, dim=-1).mean(-1)
    w = valid.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def _task_masks(n: int, valid: torch.Tensor, mask: MaskConfig, gen: torch.Generator, joints: int) -> Masks:
    """Masks for n samples of ``valid`` (n, T), invalid frames fully masked."""
    m = make_masks(n, valid.shape[1], joints, mask, gen).to(valid.device)
    return Masks(m.joints | ~valid.unsqueeze(-1), m.frames, m.visible)


def pretrain_loss(
    model: MPM, batch: dict[str, torch.Tensor], mask: MaskConfig, cfg: ObjectiveConfig, gen: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (the streaming batch contract of ``shards/stream.py``: ``pose2d`` (B, T, J, 3),
    ``pose3d`` (B, T, J, 3), ``valid2d`` / ``valid3d`` (B, T) bool; tensors on the model's device).

    ``model`` is an :class:`~pretrain.model.MPM` or an engine wrapping one; its inputs are cast to
    ``dtype`` (the engine's compute dtype), the distances are computed in float32. Masks are drawn from
    ``gen`` (any device). Returns ``(loss, {"loss_2d", "loss_3d"})``, the parts detached; a task with no
    samples contributes 0. With ``lambda_lift`` > 0 the parts include ``loss_lift`` and the batch may carry
    ``paired`` (B,) bool (absent: every window paired).

    Raises:
        ValueError: no sample of the batch has a valid 2D or 3D frame.
    """
    pose2d, pose3d = batch["pose2d"][..., :2].float(), batch["pose3d"].float()
    b, _, j, _ = pose3d.shape
    every = torch.arange(b, device=pose3d.device)
    if cfg.tasks == "both":
        i2, i3 = every, every
    else:
        n2 = round(b * cfg.frac_2d)
        i2, i3 = every[:n2], every[n2:]
    # a task takes only the samples it has something of: a window without usable 3D (an unlabelled
    # subject's) is no 3D sample, rather than an input of mask tokens in the 3D pass's batch statistics
    i2, i3 = i2[batch["valid2d"][i2].any(1)], i3[batch["valid3d"][i3].any(1)]
    x2, v2 = pose2d[i2], batch["valid2d"][i2]
    x3, v3 = pose3d[i3], batch["valid3d"][i3]
    m2 = _task_masks(len(x2), v2, mask, gen, j) if len(x2) else None
    m3 = _task_masks(len(x3), v3, mask, gen, j) if len(x3) else None
    masked_lift = cfg.lambda_lift > 0 and cfg.lift_input == "masked" and m2 is not None
    if m2 is None and m3 is None:
        raise ValueError("pretraining batch without a valid 2D or 3D frame")
    out = model(x2.to(dtype) if m2 is not None else None, m2, x3.to(dtype) if m3 is not None else None, m3,
                lift=masked_lift)
    rec2, rec3 = out[0], out[1]
    zero = pose3d.new_zeros(())
    l2 = masked_mpjpe(rec2.float(), x2, v2) if rec2 is not None else zero
    l3 = masked_mpjpe(rec3.float(), x3, v3) if rec3 is not None else zero
    loss = cfg.lambda_2d * l2 + cfg.lambda_3d * l3
    parts = {"loss_2d": l2.detach(), "loss_3d": l3.detach()}
    if cfg.lambda_lift > 0:
        paired = batch["paired"].to(every.device) if "paired" in batch else torch.ones_like(every, dtype=torch.bool)
        v_lift = v2 & batch["valid3d"][i2] & paired[i2].unsqueeze(1)
        if masked_lift:
            l_lift = masked_mpjpe(out[2].float(), pose3d[i2], v_lift)
        elif v_lift.any():  # the paired windows' complete 2D in a pass of their own (an engine passes .lift on)
            k = v_lift.any(1)
            hidden = ~v2[k].unsqueeze(-1).expand(-1, -1, j)  # frames without 2D enter as mask tokens
            l_lift = masked_mpjpe(model.lift(x2[k].to(dtype), hidden).float(), pose3d[i2][k], v_lift[k])
        else:
            l_lift = zero
        loss = loss + cfg.lambda_lift * l_lift
        parts["loss_lift"] = l_lift.detach()
    return loss, parts
