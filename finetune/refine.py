"""MPM's refine stage: a small MLP on top of a finetuned lifter that corrects the centre frame's x, y with the
2D input back-projected at the predicted depths.

Reference: the released MPM code (github.com/vvirgooo2/MPM, commit 47ceae47d75a80ca7a20dcf90371e4638669e34c:
``model/component/refine.py`` class ``refine``, ``trainutils/finetune_epoch.py`` ``step`` under ``opt.refine``,
``common/camera.py`` ``get_uvd2xyz``, ``trainer.py``, README "refine the model by"), which is P-STMO's
(github.com/paTRICK-swk/P-STMO, commit aea43d0131e39d8a963598d88331f3f28055afee: ``model/block/refine.py``,
``run.py``), itself the post-refinement of ST-GCN (Cai et al., "Exploiting Spatial-Temporal Relationships for
3D Pose Estimation via Graph Convolutional Networks", ICCV 2019). What it does, and what this module does:

- **Input.** The lifter's centre-frame prediction ``x`` (B, J, 3), metres, root-relative camera coordinates,
  and ``xyz`` (B, J, 3): the centre frame's 2D input (u, v) back-projected through the camera at the depth
  ``Z_j = z_j + Z_root`` (the predicted root-relative depth plus the pelvis depth; the pelvis at ``Z_root``),
  ``(x, y) = (u - c) * Z / f`` with the intrinsics in the 2D's normalised units
  (:func:`shards.codec.normalize_camera`), then made root-relative (:func:`backproject`, ``get_uvd2xyz``).
  ``Z_root`` is the **ground-truth** pelvis depth (``gt_3D[:, :, 0, 2]``: VideoPose3D's layout keeps the
  absolute root in joint 0), in training and in evaluation, as the reference does; a lift in the wild has
  no such depth, so :mod:`finetune.infer` does not apply the refine head.
- **Architecture** (:class:`RefineHead`): ``post_refine`` = Linear(6J, 1024), ReLU, Dropout(0.5),
  Linear(1024, 2J), Sigmoid over the per-joint concatenation ``[x_j, xyz_j]`` flattened (the reference's
  ``torch.cat((x, x_1), -1).view(N, -1)``), giving a weight ``s`` per joint and axis; the output is
  ``s * x[..., :2] + (1 - s) * xyz[..., :2]`` for x, y and the lifter's own z. Parameter names are the
  reference's (``post_refine.0``, ``post_refine.3``), initialised as PyTorch's defaults as there. At
  initialisation ``s`` is near 1/2, so the head does change the prediction; two properties can be checked
  by hand (``tests/test_refine.py``): with the last layer zeroed ``s`` is exactly 1/2 (the mean of the two
  estimates' x, y, the lifter's z), and a prediction that already projects onto its 2D input at the true
  pelvis depth is left unchanged by any weights (then ``xyz == x``).
- **Loss and schedule.** MPJPE of the refined centre frame alone against the centre frame's 3D (the
  sequence term is dropped), after the main stage: the reference reloads the best main-stage weights
  (``--reload 1 --previous_dir``) and trains again with ``--refine --lr 0.0001 -lrd 0.97``, one Adam
  (AMSGrad) over the lifter's **and** the refine head's parameters: the lifter is not frozen.
  Here that is ``python -m finetune --refine RUN/lifter.pt --lr 1e-4`` (``model.refine``,
  :func:`finetune.train.build_lifter`): the same loop, data, optimizer and per-epoch decay, the lifter and
  the head trained together, the batches carrying the camera and the pelvis
  (:class:`shards.stream.LoaderOptions` ``with_camera``).
- **Evaluation.** The reference scores the refined centre frame (its printed P1 / P2), the flip-averaged
  prediction refined with the unflipped 2D. Here :func:`refine_sequence` refines every frame of a test
  sequence's prediction (after flip averaging, with the unflipped 2D and the store's true pelvis depth and
  intrinsics), and :func:`finetune.evaluate.evaluate_lifter` reports the refined numbers as the headline and
  the unrefined ones beside them (``h36m.unrefined``), so the stage's effect reads off one results.json.

The head travels in ``lifter.pt`` as the lifter's ``refiner`` submodule (:mod:`finetune.checkpoint` records
``refine: {"hidden", "dropout"}``, plain values, so the file still loads with ``weights_only``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ingest.skeleton import JointSet
from ingest.store import Sequence
from pretrain.objective import masked_mpjpe
from shards.codec import encode_3d, frame_mask, normalize_camera, sequence_input_2d

HIDDEN = 1024  # the reference's fc_unit
DROPOUT = 0.5


class RefineHead(nn.Module):
    """The refine MLP (module docstring) for ``joints`` joints: ``forward(x (B, J, 3), xyz (B, J, 3)) -> (B, J, 3)``,
    metres, root-relative camera coordinates; x, y blended per joint and axis by a learned weight in (0, 1),
    z the lifter's.

    Args:
        joints: J.
        hidden: the hidden width (the reference's 1024).
        dropout: the hidden layer's dropout (the reference's 0.5).
    """

    def __init__(self, joints: int, hidden: int = HIDDEN, dropout: float = DROPOUT):
        super().__init__()
        if joints < 1 or hidden < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"RefineHead: joints {joints} and hidden {hidden} >= 1, dropout {dropout} in [0, 1)")
        self.joints, self.hidden, self.dropout = joints, hidden, dropout
        self.post_refine = nn.Sequential(
            nn.Linear(6 * joints, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2 * joints),
            nn.Sigmoid(),
        )

    def weights(self, x: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) blending weights ``s`` of the lifter's x, y (``1 - s`` of the back-projection's)."""
        b, j, _ = x.shape
        return self.post_refine(torch.cat([x, xyz], -1).reshape(b, 6 * j)).view(b, j, 2)

    def forward(self, x: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.joints, 3) or xyz.shape != x.shape:
            raise ValueError(
                f"RefineHead expects x and xyz of shape (B, {self.joints}, 3), got {tuple(x.shape)}, {tuple(xyz.shape)}"
            )
        s = self.weights(x, xyz)
        return torch.cat([s * x[..., :2] + (1 - s) * xyz[..., :2], x[..., 2:]], -1)


def backproject(uv: torch.Tensor, depth: torch.Tensor, root_z: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """The 2D input back-projected at the predicted depths, root-relative (the reference's ``get_uvd2xyz``).

    Args:
        uv: (B, J, 2) normalised 2D (``x / w * 2 - [1, h / w]``).
        depth: (B, J) predicted root-relative z, metres; the root joint's own value is replaced by 0
            (the pelvis sits at ``root_z``, as the reference sets it).
        root_z: (B,) the pelvis depth in camera coordinates, metres.
        camera: (B, 4) ``[f_x, f_y, c_x, c_y]`` in the 2D's normalised units (:func:`shards.codec.normalize_camera`).

    Returns:
        (B, J, 3) metres, camera coordinates, root-relative: ``(x, y) = (uv - c) * Z / f``, ``Z = depth + root_z``,
        minus the pelvis's.
    """
    z = torch.cat([torch.zeros_like(depth[:, :1]), depth[:, 1:]], 1) + root_z[:, None]
    xy = (uv - camera[:, None, 2:4]) * z[..., None] / camera[:, None, 0:2]
    xyz = torch.cat([xy, z[..., None]], -1)
    return xyz - xyz[:, :1]


def refine_centre(
    head: RefineHead, centre: torch.Tensor, uv: torch.Tensor, root_z: torch.Tensor, camera: torch.Tensor
) -> torch.Tensor:
    """The refined centre frame (B, J, 3), metres, root-relative: ``head(centre, backproject(uv, centre's z,
    root_z, camera))`` (shapes as :func:`backproject`), computed in the head's parameter dtype."""
    dtype = head.post_refine[0].weight.dtype
    xyz = backproject(uv.float(), centre[..., 2].float(), root_z.float(), camera.float())
    return head(centre.to(dtype), xyz.to(dtype))


def refine_loss(
    refined: torch.Tensor, centre: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The refine stage's loss: MPJPE of the refined centre frame (the reference's ``mpjpe_cal(post_out,
    out_target_single)``), nothing else.

    Args:
        refined, centre: (B, J, 3) the refined and the lifter's centre frame; target: (B, T, J, 3) metres
            root-relative; valid: (B, T) bool (an invalid centre frame does not count).

    Returns:
        (loss, {"mpjpe_refined", "mpjpe_centre"}: the loss and the unrefined centre's MPJPE, detached, metres).
    """
    mid = target.shape[1] // 2
    y, ok = target[:, mid : mid + 1], valid[:, mid : mid + 1]
    loss = masked_mpjpe(refined[:, None], y, ok)
    return loss, {"mpjpe_refined": loss.detach(), "mpjpe_centre": masked_mpjpe(centre.detach()[:, None], y, ok)}


def sequence_camera_root(seq: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """A store sequence's ``(camera (4,), root_z (N,))``: its intrinsics in the 2D's normalised units
    (:func:`shards.codec.normalize_camera`) and the true pelvis depth per frame, metres (0 on invalid frames).

    Raises:
        ValueError: the sequence has no intrinsics ``f`` / ``c`` in its metadata (naming it).
    """
    meta = seq.meta
    if not meta.get("f") or not meta.get("c"):
        raise ValueError(
            f"sequence {meta.get('id')}: no intrinsics 'f' and 'c' in its metadata; the refine head needs them"
        )
    _, root, _ = encode_3d(seq.pose3d, frame_mask(seq))
    return normalize_camera(meta["f"], meta["c"], float(meta["width"]), float(meta["height"])), root[:, 2]


@torch.no_grad()
def refine_sequence(
    head: RefineHead, seq: Sequence, pred: np.ndarray, joint_set: JointSet, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Refine every frame's prediction of a whole store sequence, as evaluation does (module docstring).

    Args:
        head: in evaluation mode (no dropout).
        seq: the store sequence (2D input, intrinsics and the true pelvis depth are read from it).
        pred: (N, J, 3) the lifter's root-relative prediction of every frame, millimetres.
        joint_set: the lifter's joints.

    Returns:
        (N, J, 3) refined, millimetres, root at the origin.

    Raises:
        RuntimeError: the head is in training mode. ValueError: the sequence has no intrinsics.
    """
    if head.training:
        raise RuntimeError("refine_sequence is evaluation and needs the refine head in evaluation mode (.eval())")
    camera, root_z = sequence_camera_root(seq)
    uv = torch.from_numpy(sequence_input_2d(seq, joint_set)).to(device)
    n = len(pred)
    x = torch.from_numpy(np.asarray(pred, np.float64) / 1000.0).float().to(device)
    cam = torch.from_numpy(camera).float().to(device).expand(n, 4)
    out = refine_centre(head, x, uv, torch.from_numpy(root_z).float().to(device), cam).double().cpu().numpy()
    out[:, 0] = 0.0
    return out * 1000.0
