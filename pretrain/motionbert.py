"""MotionBERT's pretraining objective (``objective.kind: motionbert``): a backbone of :mod:`pretrain.backbones`
(DSTformer, MotionBERT's network) lifts noised and masked 2D motion to 3D.

Written after Zhu et al., "MotionBERT: A Unified Perspective on Learning Human Motion Representations" (ICCV
2023), released code Walter0807/MotionBERT at commit dccfe7b14a7f09aae2e27a16d951cb4c6f6e62f6 (read, not copied):

- ``configs/pretrain/MB_pretrain.yaml``: 3D data AMASS and Human3.6M with ``synthetic: True`` ("don't use 2D
  detection results, fake it (from 3D)"), ``noise: True``, ``mask_ratio: 0.05``, ``mask_T_ratio: 0.1``, ``flip``,
  ``rootrel``, loss weights ``lambda_scale: 0.5`` (N-MPJPE), ``lambda_3d_velocity: 20``, ``lambda_lv / lg / a /
  av: 0``; 2D data (PoseTrack, InstaVariety) from epoch ``pretrain_3d_curriculum: 30`` of 90.
- ``lib/data/dataset_motion_3d.py`` ``MotionDataset3D``: with ``synthetic`` the 2D input is the x, y of the 3D
  label with confidence 1. For Human3.6M the label is the 2.5D image-frame pose (``lib/data/datareader_h36m.py``
  ``read_3d``: ``joint3d_image``, x, y normalised by ``x / w * 2 - [1, h / w]``), so its x, y *are* the
  ground-truth 2D projection in normalised pixels, the formula of posemill's ``pose2d``; AMASS has no camera
  there (``tools/convert_amass.py``: world joints turned to camera axes and scaled by 0.298), so its x, y are an
  orthographic projection of metres times 0.298.
- ``lib/data/augmentation.py`` ``Augmenter2D``: ``add_noise`` (the noise model of ``params/synthetic_noise.pth``
  and ``params/d2c_params.pkl``, whose values :data:`NOISE_MEAN`, :data:`NOISE_STD`, :data:`NOISE_WEIGHT` and
  :data:`D2C` hold) and ``add_mask``.
- ``train.py`` ``train_epoch``: ``augment2D(noise=(args.noise and has_gt), mask=args.mask)``, then for 3D data
  ``loss_mpjpe + lambda_scale * n_mpjpe + lambda_3d_velocity * loss_velocity`` against the root-relative 3D, for
  2D data ``loss_2d_weighted`` of the output's x, y against the clean 2D with its clean confidence; 2D data with
  ground-truth annotations (PoseTrack, ``has_gt``) is noised, detections (InstaVariety) are not.
- ``lib/model/loss.py``: ``loss_mpjpe``, ``n_mpjpe``, ``loss_velocity``, ``loss_2d_weighted``.

What a window of the streamed batch (``shards/stream.py``'s contract) becomes here (:func:`make_inputs`):

- **3D windows** (some frame with valid 3D): the input 2D is made from the 3D as the reference's ``synthetic``
  does. Where the window's share grants 2D-3D pairs and its 2D is the ground-truth projection (every valid
  confidence 1; the Human3.6M case, exactly the reference's input) its ``pose2d`` x, y; otherwise (a share granting
  3D without pairs, a store of detections, ``source_2d: orthographic``) the AMASS case: the orthographic
  projection ``orthographic_scale * pose3d[..., :2]`` (0.298 per metre, the reference's AMASS factor; root-relative,
  the batch carries no trajectory). Confidence 1, then the noise model (``noise``), then the mask. Target:
  ``pose3d`` (metres, root-relative); loss ``MPJPE + lambda_scale * N-MPJPE + lambda_velocity * velocity error``
  over the frames with valid 3D.
- **2D windows** (2D, no 3D: an unlabelled share): the input is ``pose2d`` with its confidence, noised only when
  it is ground truth (the reference's PoseTrack; detections are left as they are, its InstaVariety), then masked;
  loss ``lambda_2d *`` :func:`weighted_2d_error` against the clean 2D and confidence, counted from optimizer step
  ``curriculum_2d`` on (the reference: from epoch 30 of 90).

Invalid frames enter as zeros (x, y and confidence, as the reference's masked joints) and are not scored.
The batch loss is the 3D windows' mean terms plus the 2D windows' mean term (the reference alternates 3D and 2D
batches, each its own mean); a part without windows is 0.

Chosen differently from the reference, and why:

- the network predicts metres (root-relative camera coordinates), the unit finetuning trains and evaluates in,
  not the reference's 2.5D image-frame units, so the 2D term first scales the root-relative x, y of the output
  to the root-relative 2D by a per-frame confidence-weighted least-squares factor (weak perspective), where the
  reference compares its output's x, y with the 2D directly (same units there);
- the frame mask and the per-frame jitter of the noise are drawn per window; the reference draws one for the
  whole batch (``torch.rand(1, T, 1, 1)``, ``torch.randn(num_frames, num_joints, 2)``); the marginal rates are
  the same. Joint and frame masks apply each at its ratio (the reference turns both off unless both are > 0);
- no random crop-and-scale of 2D windows (``crop_scale`` of the reference's 2D datasets): shard 2D is already
  normalised by its image size, the convention finetuning feeds;
- the 2D term skips frames whose root joint has no confidence (root-relative needs the root; the reference drops
  PoseTrack clips without a visible root for the same reason, "needed for framewise rootrel").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ingest.skeleton import H36M17_TO_16
from pretrain.objective import masked_mpjpe

# params/synthetic_noise.pth (commit above): per joint of the Human3.6M-17 order, the Gaussian offsets' mean and
# standard deviation (x, y; normalised image units) and the probability that a key frame's offset is Gaussian
# rather than uniform; it has no "uniform_range", so the reference's default 0.06 applies.
NOISE_MEAN = (
    (0.0008132532206415176, 0.0002123957794343385),
    (-0.00014820766367979008, 0.001997602659830032),
    (0.002038824210894637, -0.0015100829056781799),
    (0.0009438474570305246, 0.0009083699237753135),
    (0.001867110248528105, -0.0007037034450687731),
    (0.0019328396070487199, -0.005204165804974786),
    (0.0008942056436280798, -0.001871771113689443),
    (0.002467694312049389, 0.0023339168741767025),
    (0.0021412224082639135, -0.006508411043969023),
    (0.0016559242552996734, 0.0016551084378241497),
    (0.0008369439689565895, 0.0015929352238531081),
    (0.0007939353618974142, -0.004621909163123653),
    (0.0014993540020391042, 0.00029601713545545814),
    (0.0011591824590848712, 0.0016299643529509432),
    (0.002103820868195803, -0.003166051898485928),
    (0.0016822635945976643, -0.0003300032534713677),
    (0.001663880852602262, 0.0013175154893377186),
)
NOISE_STD = (
    (0.003662630041640461, 0.0035726057983897614),
    (0.0071349284931432454, 0.005109186552172369),
    (0.006084422689136702, 0.005003425844735228),
    (0.00895302418680377, 0.00529317413820226),
    (0.006716577444309778, 0.005327725905047089),
    (0.007012923918432476, 0.00492122980480096),
    (0.009505804410684347, 0.005625369112028657),
    (0.006588318921158009, 0.004967669570185413),
    (0.005491424744604293, 0.005305329016810842),
    (0.005338831246369957, 0.004876642002854535),
    (0.00341637764777077, 0.0034922421450041914),
    (0.008006617254463182, 0.006087204448522537),
    (0.005167672298473774, 0.00475361500588003),
    (0.004990403929579402, 0.005089037811800102),
    (0.007823454557123282, 0.007934266165636946),
    (0.006009086297262234, 0.005721288594996581),
    (0.005370299691147723, 0.005684071647289275),
)
NOISE_WEIGHT = (
    0.9987454248783952,
    0.9669543010510732,
    0.8896068688589165,
    0.8938353296160423,
    0.9746202074492064,
    0.876672936095582,
    0.8210062542870395,
    0.9578073863968175,
    0.9183146347407266,
    0.9679403167247258,
    0.9841198119110484,
    0.890993166463285,
    0.8015561746381451,
    0.7027702297593045,
    0.8808956276567164,
    0.8246287738293403,
    0.7287476097892377,
)
UNIFORM_RANGE = 0.06  # width of the uniform offsets (Augmenter2D.add_noise's default)
KEYFRAMES = 27  # offsets are drawn at 27 key frames and interpolated linearly over the window (num_Kframes)
JITTER_STD = 0.002  # per-frame Gaussian jitter added on top (noise_std)
# params/d2c_params.pkl: confidence from the offset's length d, a / (d + a) + b * d + N(m, s), clipped to [0, 1]
# (Augmenter2D.dis2conf); m and s are the file's float32 values
D2C = {"a": 0.028, "b": 1.1, "m": -0.004585696384310722, "s": 0.14310568571090698}
AMASS_SCALE = 0.298  # tools/convert_amass.py scale_factor: metres to the reference's normalised units
SOURCES = ("pose2d", "orthographic")


@dataclass
class MotionBERTConfig:
    """MotionBERT's objective (``objective.kind: motionbert``; module docstring), defaults from
    ``configs/pretrain/MB_pretrain.yaml``. ``mask_ratio``: the share of (frame, joint) entries zeroed;
    ``mask_t_ratio``: the share of whole frames zeroed (``mask_T_ratio``); ``noise``: the synthetic 2D noise
    model on the 3D windows' input (and on ground-truth 2D windows'); ``lambda_scale`` (N-MPJPE),
    ``lambda_velocity`` (velocity error) and ``lambda_2d`` (the 2D windows' confidence-weighted term) weigh the
    terms beside MPJPE (weight 1); ``curriculum_2d``: optimizer steps before the 2D windows count (the reference
    trains on 3D alone for its first 30 of 90 epochs: a third of ``train.steps``); ``source_2d``: the 3D
    windows' input, ``pose2d`` (a paired window's ground-truth 2D projection, else the orthographic projection)
    or ``orthographic`` (always the projection of the 3D); ``orthographic_scale``: normalised image units per
    metre of that projection (the reference's AMASS factor 0.298)."""

    mask_ratio: float = 0.05
    mask_t_ratio: float = 0.1
    noise: bool = True
    lambda_scale: float = 0.5
    lambda_velocity: float = 20.0
    lambda_2d: float = 1.0
    curriculum_2d: int = 0
    source_2d: str = "pose2d"
    orthographic_scale: float = AMASS_SCALE

    def __post_init__(self) -> None:
        for key in ("mask_ratio", "mask_t_ratio"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"motionbert.{key} must be in [0, 1), got {getattr(self, key)}")
        for key in ("lambda_scale", "lambda_velocity", "lambda_2d"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"motionbert.{key} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.orthographic_scale) and self.orthographic_scale > 0.0):
            raise ValueError(f"motionbert.orthographic_scale must be finite and > 0, got {self.orthographic_scale}")
        if self.curriculum_2d < 0:
            raise ValueError(f"motionbert.curriculum_2d must be >= 0, got {self.curriculum_2d}")
        if self.source_2d not in SOURCES:
            raise ValueError(f"motionbert.source_2d={self.source_2d!r} is not one of {SOURCES}")


def noise_parameters(joints: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean (J, 2), std (J, 2), weight (J,)) float32 of the noise model for the Human3.6M 17- or 16-joint set
    (neck/nose dropped, :data:`ingest.skeleton.H36M17_TO_16`). Raises ValueError for other joint counts."""
    if joints not in (16, 17):
        raise ValueError(f"MotionBERT's noise model has the Human3.6M 17- or 16-joint sets, not {joints} joints")
    index = list(H36M17_TO_16) if joints == 16 else list(range(17))
    mean, std, weight = (torch.tensor(v, dtype=torch.float32)[index] for v in (NOISE_MEAN, NOISE_STD, NOISE_WEIGHT))
    return mean, std, weight


def noise_offsets(b: int, t: int, joints: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's 2D offsets for ``b`` windows of ``t`` frames (CPU, float32, drawn from ``gen``).

    At :data:`KEYFRAMES` key frames each joint's offset is, with the joint's probability :data:`NOISE_WEIGHT`,
    Gaussian (:data:`NOISE_MEAN`, :data:`NOISE_STD`), else uniform on +-``UNIFORM_RANGE / 2``; the key frames are
    interpolated linearly over the ``t`` frames (first and last key frame on the first and last frame: the
    reference's ``interpolate(..., mode="trilinear", align_corners=True)``, whose joint and coordinate axes keep
    their sizes) and a Gaussian jitter of std :data:`JITTER_STD` is added per frame.

    Returns:
        (key-frame offsets (b, 27, J, 2), offsets (b, t, J, 2)), normalised image units.
    """
    mean, std, weight = noise_parameters(joints)
    sel = torch.rand(b, KEYFRAMES, joints, 1, generator=gen)
    gauss = torch.randn(b, KEYFRAMES, joints, 2, generator=gen) * std + mean
    uniform = (torch.rand(b, KEYFRAMES, joints, 2, generator=gen) - 0.5) * UNIFORM_RANGE
    key = torch.where(sel < weight[:, None], gauss, uniform)
    flat = key.permute(0, 2, 3, 1).reshape(b, joints * 2, KEYFRAMES)
    smooth = F.interpolate(flat, size=t, mode="linear", align_corners=True).view(b, joints, 2, t).permute(0, 3, 1, 2)
    return key, smooth + torch.randn(b, t, joints, 2, generator=gen) * JITTER_STD


def offset_confidence(distance: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The reference's confidence of a 2D offset of length ``distance`` (any shape, CPU, normalised image units):
    ``a / (d + a) + b * d + N(m, s)`` clipped to [0, 1] (:data:`D2C`): near 1 for small offsets, falling to its
    minimum near d = 0.13, a crude detector's score."""
    a, b, m, s = D2C["a"], D2C["b"], D2C["m"], D2C["s"]
    shift = torch.randn(distance.shape, generator=gen, dtype=distance.dtype) * s + m
    return (a / (distance + a) + b * distance + shift).clamp(0.0, 1.0)


def add_noise(xy: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, J, 2) normalised 2D -> (noised 2D (B, T, J, 2), confidence (B, T, J)) on ``xy``'s device
    (:func:`noise_offsets`, :func:`offset_confidence`; ``Augmenter2D.add_noise``)."""
    b, t, j, _ = xy.shape
    _, delta = noise_offsets(b, t, j, gen)
    conf = offset_confidence(torch.linalg.vector_norm(delta, dim=-1), gen)
    return xy + delta.to(xy.device, xy.dtype), conf.to(xy.device, xy.dtype)


def keep_mask(b: int, t: int, joints: int, cfg: MotionBERTConfig, gen: torch.Generator) -> torch.Tensor:
    """(b, t, J) bool, False where an entry is masked: each (frame, joint) with probability ``mask_ratio`` and
    each whole frame of a window with probability ``mask_t_ratio`` (``Augmenter2D.add_mask``; CPU)."""
    joint = torch.rand(b, t, joints, generator=gen) >= cfg.mask_ratio
    frame = torch.rand(b, t, 1, generator=gen) >= cfg.mask_t_ratio
    return joint & frame


@dataclass
class Inputs:
    """What :func:`make_inputs` gives: ``x`` (B, T, J, 3) the network's input (normalised x, y, confidence;
    zeros where masked or absent); ``is3d`` / ``is2d`` (B,) bool: the windows scored against their 3D / against
    their 2D alone; ``from_pose2d`` (B,) bool: the 3D windows whose input came from their ``pose2d``."""

    x: torch.Tensor
    is3d: torch.Tensor
    is2d: torch.Tensor
    from_pose2d: torch.Tensor


def make_inputs(batch: dict[str, torch.Tensor], cfg: MotionBERTConfig, gen: torch.Generator) -> Inputs:
    """The corrupted 2D input of every window of a streamed batch (module docstring): ``pose2d`` (B, T, J, 3),
    ``pose3d`` (B, T, J, 3), ``valid2d`` / ``valid3d`` (B, T) bool and optionally ``paired`` (B,) bool (absent:
    every window paired). Random draws come from ``gen`` (CPU)."""
    pose2d, pose3d = batch["pose2d"].float(), batch["pose3d"].float()
    v2, v3 = batch["valid2d"].bool(), batch["valid3d"].bool()
    b, t, j, _ = pose3d.shape
    paired = batch["paired"].bool() if "paired" in batch else torch.ones(b, dtype=torch.bool, device=v2.device)
    has2d = v2.any(1)
    # ground-truth 2D: the projected ground truth has confidence 1 on every valid frame (DESIGN.md)
    gt2d = has2d & ((pose2d[..., 2] == 1.0) | ~v2[..., None]).all(2).all(1)
    is3d = v3.any(1)
    is2d = has2d & ~is3d
    from_pose2d = is3d & paired & gt2d & (cfg.source_2d == "pose2d")
    use2d = from_pose2d | is2d
    xy = torch.where(use2d[:, None, None, None], pose2d[..., :2], cfg.orthographic_scale * pose3d[..., :2])
    conf = torch.where(is3d[:, None, None], torch.ones_like(pose2d[..., 2]), pose2d[..., 2])
    if cfg.noise:
        noised, noise_conf = add_noise(xy, gen)
        gets = is3d | (is2d & gt2d)
        xy = torch.where(gets[:, None, None, None], noised, xy)
        conf = torch.where(gets[:, None, None], noise_conf, conf)
    present = torch.where(use2d[:, None], v2, v3)
    keep = keep_mask(b, t, j, cfg, gen).to(present.device) & present[..., None]
    x = torch.cat([xy, conf[..., None]], dim=-1) * keep[..., None]
    return Inputs(x=x, is3d=is3d, is2d=is2d, from_pose2d=from_pose2d)


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """N-MPJPE: MPJPE after scaling each frame's prediction by ``s = mean_j <t_j, p_j> / mean_j |p_j|^2``, the
    scale minimising ``sum_j |s p_j - t_j|^2`` (reference ``n_mpjpe``, one scale per window and frame).

    Args: pred, target (B, T, J, 3); valid (B, T) bool. Returns the mean over valid frames and all joints, the
    targets' unit.
    """
    num = (target * pred).sum(-1).mean(-1)
    den = (pred * pred).sum(-1).mean(-1)
    scale = num / den.clamp_min(1e-12)
    return masked_mpjpe(scale[..., None, None] * pred, target, valid)


def velocity_error(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MPJVE: the mean over consecutive valid frame pairs and joints of ``|(p_{t+1} - p_t) - (g_{t+1} - g_t)|``
    (reference ``loss_velocity``), the targets' unit per frame. pred, target (B, T, J, 3); valid (B, T) bool;
    0 for one-frame windows."""
    both = valid[:, 1:] & valid[:, :-1]
    return masked_mpjpe(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1], both)


def weighted_2d_error(pred3d: torch.Tensor, pose2d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The reference's ``loss_2d_weighted`` (mean of ``|(p_xy - u) * c|``) for a prediction in metres.

    The root-relative x, y of ``pred3d`` (B, T, J, 3) are scaled per frame by the non-negative factor that
    minimises ``sum_j c_j^2 |s xy_j - u_j|^2`` (weak perspective: it stands for ``f / Z_root * 2 / w``), ``u`` the
    root-relative x, y and ``c`` the confidence of ``pose2d`` (B, T, J, 3) (normalised image units); the error is
    the mean over valid frames (``valid`` (B, T) bool) and all joints of ``|(s xy_j - u_j) * c_j|``, normalised
    image units. Frames whose root has confidence 0 are not scored.
    """
    conf = pose2d[..., 2]
    u = pose2d[..., :2] - pose2d[..., :1, :2]
    xy = pred3d[..., :2] - pred3d[..., :1, :2]
    c2 = (conf * conf)[..., None]
    s = ((c2 * u * xy).sum((-1, -2)) / (c2 * xy * xy).sum((-1, -2)).clamp_min(1e-12)).clamp_min(0.0)
    err = torch.linalg.vector_norm((s[..., None, None] * xy - u) * conf[..., None], dim=-1).mean(-1)
    w = (valid & (conf[..., 0] > 0)).to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


PARTS = ("loss_3d_pos", "loss_3d_scale", "loss_3d_velocity", "loss_2d_proj")


def motionbert_loss(
    model,
    batch: dict[str, torch.Tensor],
    cfg: MotionBERTConfig,
    gen: torch.Generator,
    dtype: torch.dtype = torch.float32,
    step: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (the streaming batch contract, tensors on the model's device; module docstring).

    ``model`` is a sequence-to-sequence backbone (``(B, T, J, 3) -> (B, T, J, 3)``, DSTformer) or an engine
    wrapping one; its input is cast to ``dtype``, the losses are computed in float32. ``step``: the optimizer
    step, for ``curriculum_2d``. Returns ``(loss, parts)``, parts :data:`PARTS` detached (metres for the 3D
    terms, metres per frame for the velocity, normalised image units for the 2D term; 0 where the batch has no
    such window).

    Raises:
        ValueError: no window of the batch has a valid 2D or 3D frame.
    """
    inputs = make_inputs(batch, cfg, gen)
    is3d, is2d = inputs.is3d, inputs.is2d
    if not (is3d.any() or is2d.any()):
        raise ValueError("pretraining batch without a valid 2D or 3D frame")
    pred = model(inputs.x.to(dtype)).float()
    zero = pred.sum() * 0.0  # keeps the graph for a batch that scores nothing (2D windows before curriculum_2d)
    l_pos = l_scale = l_vel = l_2d = zero
    if is3d.any():
        p, g, v = pred[is3d], batch["pose3d"].float()[is3d], batch["valid3d"].bool()[is3d]
        l_pos, l_scale, l_vel = masked_mpjpe(p, g, v), n_mpjpe(p, g, v), velocity_error(p, g, v)
    if is2d.any() and step >= cfg.curriculum_2d:
        l_2d = weighted_2d_error(pred[is2d], batch["pose2d"].float()[is2d], batch["valid2d"].bool()[is2d])
    loss = l_pos + cfg.lambda_scale * l_scale + cfg.lambda_velocity * l_vel + cfg.lambda_2d * l_2d
    parts = dict(zip(PARTS, (t.detach() for t in (l_pos, l_scale, l_vel, l_2d)), strict=True))
    return loss, parts
