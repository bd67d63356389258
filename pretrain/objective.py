"""MPM's pretraining objective (``objective.kind: mpm``; MotionBERT's is :mod:`pretrain.motionbert`):
lambda_2d * L2D + lambda_3d * L3D (+ lambda_lift * Llift) over masked 2D and 3D reconstructions.

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

``Lreproject`` and ``Lbone`` let the *unpaired* 2D windows (an unlabelled subject's 2D, no 3D) teach the
lifting path, as VideoPose3D's semi-supervised training does (Pavllo et al., CVPR 2019, section 4; released
``run.py``: ``loss_reconstruction`` and the "bone length term"). They score the lift the lifting term uses
(of the complete 2D window by default, of the masked view with ``lift_input: masked``), and

- ``Lreproject``: the lifted pose, projected back, must give the input 2D. posemill has no trajectory model,
  so the projection is weak-perspective: per frame, the root-relative x, y of the lift times the scale that
  fits the root-relative input 2D best in least squares (:func:`weak_perspective_error`), in normalised image
  units (VideoPose3D's reprojection MPJPE is in the same units);
- ``Lbone``: the batch-mean bone lengths of the unpaired lifts must match those of the paired lifts of the
  same batch (released ``run.py``: ``mean |mean(bones_lab) - mean(bones_unlab)|``, metres), which fixes the
  scale the reprojection leaves free and, with it, how much depth the 2D leaves room for.

Frames flagged invalid in the batch (``valid2d`` / ``valid3d`` False) are hidden from the network (every
joint masked) and excluded from the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ingest.skeleton import H36M16, H36M17
from pretrain.masking import MaskConfig, Masks, make_masks
from pretrain.model import MPM

TASKS = ("both", "split")
LIFT_INPUTS = ("complete", "masked")
KINDS = ("mpm", "motionbert")


@dataclass
class ObjectiveConfig:
    """``kind``: the stage-I objective, ``mpm`` (this module: MPM's masked 2D / 3D modelling of MPM's network,
    ``model.backbone: mpm``) or ``motionbert`` (MotionBERT's: a backbone of :mod:`pretrain.backbones` lifts noised
    and masked 2D, :mod:`pretrain.motionbert`, tuned by the ``motionbert`` section; the other fields here and the
    ``mask`` section are MPM's and unused by it).

    ``lambda_2d`` / ``lambda_3d`` / ``lambda_lift`` loss weights (``lambda_lift`` 0: MPM's two-task
    objective, no lifting term; the released code's third path weighs it 1); ``lambda_reproject`` /
    ``lambda_bone``: the unpaired windows' reprojection and bone-length terms (0: off; VideoPose3D weighs
    both 1); ``tasks``: ``both``
    reconstructs every sample from a masked 2D view and from a masked 3D view (the released pretraining
    loop), ``split`` gives each sample one task: the first ``round(B * frac_2d)`` samples of a (shuffled)
    batch are 2D tasks, the rest 3D."""

    kind: str = "mpm"
    lambda_2d: float = 2.0
    lambda_3d: float = 3.0
    lambda_lift: float = 0.0
    lambda_reproject: float = 0.0
    lambda_bone: float = 0.0
    lift_input: str = "complete"
    tasks: str = "both"
    frac_2d: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"objective.kind={self.kind!r} is not one of {KINDS}")
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


def weak_perspective_error(pred3d: torch.Tensor, pose2d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Reprojection error of lifted poses under a weak-perspective camera fitted per frame.

    The root-relative x, y of ``pred3d`` (B, T, J, 3), any unit, are scaled by the non-negative factor s that
    minimises ``||s * xy - u||^2`` over the frame's joints, ``u`` the root-relative input 2D (B, T, J, 2)
    (normalised image coordinates); the error is the mean over valid frames (``valid`` (B, T) bool) and
    joints of ``||s * xy - u||``, in the units of ``pose2d``. The scale stands in for ``f / Z_root`` (times
    ``2 / w``), which a root-relative lift does not predict; the error is invariant to the lift's overall
    scale, and a perspective camera differs from it by about the ratio of a joint's depth offset to the root
    depth (a few per cent on Human3.6M).
    """
    u = pose2d[..., :2] - pose2d[..., :1, :2]
    xy = pred3d[..., :2] - pred3d[..., :1, :2]
    s = ((u * xy).sum((-1, -2)) / (xy * xy).sum((-1, -2)).clamp_min(1e-12)).clamp_min(0.0)
    return masked_mpjpe(s[..., None, None] * xy, u, valid)


def mean_bone_lengths(pose3d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, T, J, 3) poses of the Human3.6M 17- or 16-joint set -> (J - 1,) bone lengths (the poses' unit,
    one per non-root joint in joint order, parents from :mod:`ingest.skeleton`) averaged over the valid
    frames (``valid`` (B, T) bool) of the batch; 0 where no frame is valid."""
    parents = (H36M17 if pose3d.shape[2] == 17 else H36M16).parents
    child = [j for j, p in enumerate(parents) if p >= 0]
    length = torch.linalg.vector_norm(pose3d[:, :, child] - pose3d[:, :, [parents[j] for j in child]], dim=-1)
    w = valid.to(length.dtype)[..., None]
    return (length * w).sum((0, 1)) / w.sum((0, 1)).clamp_min(1.0)


def _task_masks(n: int, valid: torch.Tensor, mask: MaskConfig, gen: torch.Generator, joints: int) -> Masks:
    """Masks for n samples of ``valid`` (n, T), invalid frames fully masked."""
    m = make_masks(n, valid.shape[1], joints, mask, gen).to(valid.device)
    return Masks(m.joints | ~valid.unsqueeze(-1), m.frames, m.visible)


def pretrain_loss(
    model: MPM,
    batch: dict[str, torch.Tensor],
    mask: MaskConfig,
    cfg: ObjectiveConfig,
    gen: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (the streaming batch contract of ``shards/stream.py``: ``pose2d`` (B, T, J, 3),
    ``pose3d`` (B, T, J, 3), ``valid2d`` / ``valid3d`` (B, T) bool; tensors on the model's device).

    ``model`` is an :class:`~pretrain.model.MPM` or an engine wrapping one; its inputs are cast to
    ``dtype`` (the engine's compute dtype), the distances are computed in float32. Masks are drawn from
    ``gen`` (any device). Returns ``(loss, {"loss_2d", "loss_3d"})``, the parts detached; a task with no
    samples contributes 0. With ``lambda_lift`` > 0 the parts include ``loss_lift``, with ``lambda_reproject``
    or ``lambda_bone`` > 0 ``loss_reproject`` and ``loss_bone`` (0 for a batch without unpaired 2D windows);
    the batch may carry ``paired`` (B,) bool (absent: every window paired).

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
    out = model(
        x2.to(dtype) if m2 is not None else None, m2, x3.to(dtype) if m3 is not None else None, m3, lift=masked_lift
    )
    rec2, rec3 = out[0], out[1]
    zero = pose3d.new_zeros(())
    l2 = masked_mpjpe(rec2.float(), x2, v2) if rec2 is not None else zero
    l3 = masked_mpjpe(rec3.float(), x3, v3) if rec3 is not None else zero
    loss = cfg.lambda_2d * l2 + cfg.lambda_3d * l3
    parts = {"loss_2d": l2.detach(), "loss_3d": l3.detach()}
    unpaired_terms = cfg.lambda_reproject > 0 or cfg.lambda_bone > 0
    if cfg.lambda_lift > 0 or unpaired_terms:
        paired = batch["paired"].to(every.device) if "paired" in batch else torch.ones_like(every, dtype=torch.bool)
        is_paired = batch["valid3d"][i2].any(1) & paired[i2]
        v_lift = v2 & batch["valid3d"][i2] & paired[i2].unsqueeze(1)
        # the windows to lift: the paired ones, and with the unpaired terms every 2D sample
        k = torch.ones_like(is_paired) if unpaired_terms else is_paired
        if masked_lift:
            lifted = out[2].float()
        elif k.any():  # complete 2D in a pass of its own (an engine passes .lift on)
            lifted = torch.zeros_like(pose3d[i2])
            hidden = ~v2[k].unsqueeze(-1).expand(-1, -1, j)  # frames without 2D enter as mask tokens
            lifted[k] = model.lift(x2[k].to(dtype), hidden).float()
        else:
            lifted = None
        l_lift = masked_mpjpe(lifted, pose3d[i2], v_lift) if lifted is not None else zero
        if cfg.lambda_lift > 0:
            loss = loss + cfg.lambda_lift * l_lift
            parts["loss_lift"] = l_lift.detach()
        if unpaired_terms:
            v_un = v2 & ~is_paired.unsqueeze(1)
            l_rep = l_bone = zero
            if lifted is not None and v_un.any():
                l_rep = weak_perspective_error(lifted, x2, v_un)
                if v_lift.any():
                    l_bone = (mean_bone_lengths(lifted, v_un) - mean_bone_lengths(lifted, v_lift)).abs().mean()
            loss = loss + cfg.lambda_reproject * l_rep + cfg.lambda_bone * l_bone
            parts["loss_reproject"], parts["loss_bone"] = l_rep.detach(), l_bone.detach()
    return loss, parts
