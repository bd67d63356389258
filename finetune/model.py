"""The lifting network of MPM's stage II: pretrained 2D encoder and shared layers, the pretrained 3D decoder
on every frame, and a centre-frame prediction from either a strided transformer (as released) or that decoder.

Architecture follows the released MPM code (github.com/vvirgooo2/MPM ``model/MPM.py`` class ``Model`` and
``model/component/strided_transformer_encoder.py``, which is P-STMO's and Li et al.'s "Exploiting Temporal
Contexts with Strided Transformer for 3D Human Pose Estimation", IEEE TMM 2022):

- ``encoder_2d`` and ``shared`` are the pretraining network's modules (:class:`pretrain.model.MPM`), so the
  pretrained weights load by name; ``mask_token_2d`` comes along for occluded-input evaluation.
- ``reduce``: ``len(strides)`` pre-norm transformer layers whose feed-forward is Conv1d(C, H, 1), ReLU,
  dropout, Conv1d(H, C, 3, stride s, padding 1) and whose residual is subsampled by the same stride
  (``MaxPool1d(1, s)``), so 243 frames shrink 243 -> 81 -> 27 -> 9 -> 3 -> 1 with strides (3, 3, 3, 3, 3);
  learned positional embeddings are added before the first three layers (as released).
- ``head`` (centre frame): BatchNorm(C) then a linear map to J x 3 (the released 1x1 ``Conv1d`` head ``fcn``).
- ``seq_head`` (every frame, on the shared features) is the pretraining network's 3D decoder
  (:class:`pretrain.model.Decoder`, with its positional table ``dec_pos_emb``), every frame visible. The
  released code puts a linear head (``fcn_1``) here and discards the decoders; keeping the decoder makes the
  lifter's sequence output, before any finetuning, the pretraining network's own lift
  (:meth:`pretrain.model.MPM.lift`), so finetuning starts from what pretraining's lifting terms learned
  rather than from a random read-out (measured in the README's data-scaling section). From scratch the
  same modules start random.
- ``centre_head``: ``"strided"`` predicts the centre frame with ``reduce`` and ``head`` (the released stage
  II); ``"decoder"`` takes the centre frame of ``seq_head``'s output and has no ``reduce`` / ``head``, so
  every lifter parameter is pretrained and nothing fresh sits between the pretrained features and
  the centre-frame loss (VideoPose3D / MotionBERT-style: one output per frame, the evaluated frame picked
  from it). In the semi-supervised recipe the fresh strided path pulled the pretrained shared layers away
  from what they learned (README, "Does pretraining pay?").

Inputs are normalised 2D poses (DESIGN.md) (B, T, J, 2), extra channels such as confidence ignored;
outputs metres, root-relative camera coordinates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ingest.skeleton import H36M16, H36M17, JointSet
from pretrain.model import Attention, Decoder, FrameEncoder, ModelConfig, Shared, attend
from pretrain.objective import masked_mpjpe

# Stride schedules of the released code (common/opt.py ``stride_num``) by window length.
STRIDES: dict[int, tuple[int, ...]] = {
    1: (1,),
    9: (1, 3, 3),
    27: (3, 3, 3),
    81: (3, 3, 3, 3),
    243: (3, 3, 3, 3, 3),
    351: (3, 9, 13),
}
# lifter parameter name prefix -> the pretraining network's (pretrain.model.MPM) name for it
PRETRAINED = {
    "encoder_2d.": "encoder_2d.",
    "shared.": "shared.",
    "mask_token_2d": "mask_token_2d",
    "seq_head.": "decoder_3d.",
    "dec_pos_emb": "dec_pos_emb",
}
PRETRAINED_PREFIXES = tuple(PRETRAINED)
CENTRE_HEADS = ("strided", "decoder")


def strided_length(frames: int, strides: tuple[int, ...]) -> int:
    """Sequence length after the strided layers (kernel 3, padding 1 and kernel 1 give the same length)."""
    for s in strides:
        frames = (frames - 1) // s + 1
    return frames


def _cpu_attention_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def flop_counter() -> FlopCounterMode:
    """torch's ``FlopCounterMode`` (no display) that also counts the CPU attention kernel
    (``_scaled_dot_product_flash_attention_for_cpu``, absent from torch's table, which has the GPU ones only)
    as its two matrix products."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    return FlopCounterMode(display=False, custom_mapping=mapping)


class StridedLayer(nn.Module):
    """x + Drop(Attn(LN(x))), then pool_s(x) + Drop(FF_s(LN(x))); (B, L, C) -> (B, ceil(L / s), C)."""

    def __init__(self, cfg: ModelConfig, stride: int):
        super().__init__()
        c = cfg.channels
        self.stride = stride
        self.norm1 = nn.LayerNorm(c, eps=1e-6)
        self.attn = Attention(c, cfg.heads, cfg.attn_dropout)
        self.norm2 = nn.LayerNorm(c, eps=1e-6)
        self.ff1 = nn.Conv1d(c, cfg.hidden, kernel_size=1)
        self.ff2 = nn.Conv1d(cfg.hidden, c, kernel_size=3, stride=stride, padding=1)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn.qkv(self.norm1(x))))
        y = self.ff2(self.drop(F.relu(self.ff1(self.norm2(x).transpose(1, 2))))).transpose(1, 2)
        return x[:, :: self.stride] + self.drop(y)


class StridedTransformer(nn.Module):
    """Strided layers with learned positional embeddings (frames, C) before the first three.
    (B, T, C) -> (B, L, C) with L = :func:`strided_length` (1 for the released schedules)."""

    def __init__(self, cfg: ModelConfig, strides: tuple[int, ...], frames: int):
        super().__init__()
        self.layers = nn.ModuleList(StridedLayer(cfg, s) for s in strides)
        self.pos_emb = nn.ParameterList(
            nn.Parameter(torch.randn(frames, cfg.channels)) for _ in range(min(3, len(strides)))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if i < len(self.pos_emb):
                x = x + self.pos_emb[i][: x.shape[1]]
            x = layer(x)
        return x


class PoseHead(nn.Module):
    """BatchNorm(C) and Linear(C -> J * 3) per token: (B, L, C) -> (B, L, J, 3)."""

    def __init__(self, channels: int, joints: int):
        super().__init__()
        self.joints = joints
        self.bn = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels, joints * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        return self.fc(self.bn(x.reshape(b * length, c))).view(b, length, self.joints, 3)


def per_frame_features(encoder_2d: FrameEncoder, shared: Shared, pose2d: torch.Tensor) -> torch.Tensor:
    """(N, J, C >= 2) frames -> (N, channels): the 2D encoder and the shared spatial MLP, the per-frame layers of
    the pretraining network and of the lifter (x, y only)."""
    return shared.spatial(encoder_2d(pose2d[..., :2].reshape(pose2d.shape[0], -1)))


def temporal_features(shared: Shared, x: torch.Tensor) -> torch.Tensor:
    """(B, T, channels) per-frame features -> (B, T, channels): the shared temporal transformer and the final
    norm (:class:`pretrain.model.Shared` after its spatial MLP, every frame visible), as its modules compute it."""
    return shared.norm(shared.temporal(x))


def decoder_centre(decoder: Decoder, feats: torch.Tensor, pos_table: torch.Tensor) -> torch.Tensor:
    """The centre frame of ``decoder``'s output over shared features (B, T, C), every frame visible: (B, J, d),
    equal to ``decoder(feats, arange(T), token, pos_table[:T])[:, T // 2]`` in evaluation mode (no dropout) at
    a fraction of its cost. Its last layer needs keys and values of every frame but the query, the attention
    output, the feed-forward, the final norm and the head of the centre token only; earlier layers (a
    decoder of several) run on every frame."""
    b, t, c = feats.shape
    mid = t // 2
    x = feats + pos_table[:t].to(feats.dtype)
    *before, last = decoder.stack.layers
    for layer in before:
        x = layer(x)
    attn = last.attn
    h = last.norm1(x)
    w, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h[:, mid : mid + 1], w[:c], bias[:c]).view(b, 1, attn.heads, -1).transpose(1, 2)
    k, v = F.linear(h, w[c:], bias[c:]).view(b, t, 2, attn.heads, -1).permute(2, 0, 3, 1, 4)
    y = x[:, mid] + attn.out(attend(q, k, v).reshape(b, c))
    y = y + last.ff2(F.relu(last.ff1(last.norm2(y))))
    return decoder.head(decoder.head_bn(decoder.stack.norm(y))).view(b, decoder.joints, decoder.dim)


def _require_eval(module: nn.Module, name: str) -> None:
    if module.training:
        raise RuntimeError(
            f"{type(module).__name__}.{name} is centre-frame evaluation and needs evaluation mode (.eval()): in "
            "training mode batch norm would normalise by the call's frames and dropout would be drawn"
        )


class Lifter(nn.Module):
    """2D-to-3D lifting network for windows of ``cfg.frames`` frames.

    Args:
        cfg: the pretraining network's sizes (:class:`pretrain.model.ModelConfig`); ``cfg.frames`` sizes
            the shared transformer's positional table, as in pretraining.
        frames: window length T, at most ``cfg.frames`` (default ``cfg.frames``); shorter windows use the
            first T positional embeddings, as the pretraining network does for short sequences.
        strides: strided-transformer schedule; default :data:`STRIDES` [T]. Must reduce T to 1 frame.
            Only for ``centre_head="strided"``.
        centre_head: :data:`CENTRE_HEADS`, see the module docstring. ``"decoder"`` needs an odd T (a
            centre frame).

    Attributes besides the modules: ``frames`` T, ``joint_set``, ``joints`` J, ``in_features`` (2: x, y read),
    ``protocol`` (``"centre"``, its evaluation protocol), as :class:`finetune.backbone_lifter.BackboneLifter`
    has them; ``refiner``: None, or the refine stage's :class:`finetune.refine.RefineHead` (a submodule, in the
    state dict as ``refiner.*``), applied outside ``forward`` by the refine stage's training and by
    evaluation.

    Raises:
        ValueError: no schedule for T, or one that does not end at one frame; strides given to the
            decoder's centre head; an even T for it; T above ``cfg.frames``; joints other than 16 / 17;
            an unknown ``centre_head``.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        frames: int | None = None,
        strides: tuple[int, ...] | None = None,
        centre_head: str = "strided",
    ):
        super().__init__()
        frames = cfg.frames if frames is None else frames
        if not 1 <= frames <= cfg.frames:
            raise ValueError(f"window of {frames} frames must be in 1..{cfg.frames} (model.frames)")
        if centre_head not in CENTRE_HEADS:
            raise ValueError(f"centre_head must be one of {CENTRE_HEADS}, got {centre_head!r}")
        if centre_head == "decoder":
            if strides:
                raise ValueError(f"strides {tuple(strides)} given, but centre_head='decoder' has no strided layers")
            if frames % 2 == 0:
                raise ValueError(f"centre_head='decoder' needs an odd window (a centre frame), got {frames} frames")
            strides = ()
        elif strides is None:
            if frames not in STRIDES:
                raise ValueError(f"no stride schedule for {frames} frames (known: {sorted(STRIDES)}); pass strides")
            strides = STRIDES[frames]
        if centre_head == "strided" and strided_length(frames, tuple(strides)) != 1:
            raise ValueError(
                f"strides {tuple(strides)} reduce {frames} frames to {strided_length(frames, tuple(strides))}, not 1"
            )
        if cfg.joints not in (16, 17):
            raise ValueError(f"lifting supports the Human3.6M 17- or 16-joint sets, not {cfg.joints} joints")
        self.cfg, self.frames, self.strides, self.centre_head = cfg, frames, tuple(strides), centre_head
        self.joints, self.in_features, self.protocol = cfg.joints, 2, "centre"
        self.joint_set: JointSet = H36M17 if cfg.joints == 17 else H36M16
        self.frozen: tuple[str, ...] = ()
        self.refiner = None  # MPM's refine head (finetune.refine), attached by a refine stage
        self.encoder_2d = FrameEncoder(2 * cfg.joints, 2 * cfg.channels, cfg.dropout)
        self.shared = Shared(cfg)
        self.mask_token_2d = nn.Parameter(torch.randn(2))
        if centre_head == "strided":
            self.reduce = StridedTransformer(cfg, self.strides, frames)
            self.head = PoseHead(cfg.channels, cfg.joints)
        self.seq_head = Decoder(cfg, 3)
        self.dec_pos_emb = nn.Parameter(torch.randn(cfg.frames, cfg.channels))

    def forward(
        self,
        pose2d: torch.Tensor,
        joint_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Lift a batch of windows.

        Args:
            pose2d: (B, T, J, C >= 2) normalised 2D; channels beyond x, y are ignored.
            joint_mask: optional (B, T, J) or (B, J) bool; True joints are replaced by the learned
                ``mask_token_2d`` (occluded-input evaluation, MPM tables 3-4).

        Returns:
            (centre (B, J, 3), sequence (B, T, J, 3)), metres, root-relative.

        Raises:
            ValueError: wrong shape.
        """
        cfg = self.cfg
        if pose2d.ndim != 4 or pose2d.shape[1] != self.frames or pose2d.shape[2] != cfg.joints or pose2d.shape[3] < 2:
            raise ValueError(
                f"Lifter expects pose2d of shape (B, {self.frames}, {cfg.joints}, >=2), got {tuple(pose2d.shape)}"
            )
        feats = self._features(pose2d, joint_mask)
        sequence = self._sequence(feats)
        if self.centre_head == "decoder":
            return sequence[:, self.frames // 2], sequence
        return self.head(self.reduce(feats))[:, 0], sequence

    def _sequence(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, C) shared features -> (B, T, J, 3): the 3D decoder with every frame visible (its mask token
        is never used, so zeros stand in for it). The positional rows are a copy, not a view: a view of a
        parameter made under ``no_grad`` still requires grad without a grad function, which module hooks
        such as torch's ``FlopCounterMode`` (``python -m finetune.bench``) refuse as a module input."""
        b, t, c = feats.shape
        visible = torch.arange(t, device=feats.device).expand(b, t)
        pos = self.dec_pos_emb[:t].to(feats.dtype, copy=True)
        return self.seq_head(feats, visible, feats.new_zeros(c), pos)

    def _features(self, pose2d: torch.Tensor, joint_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, J, C) -> (B, T, channels): the 2D encoder and the shared layers (masked joints as tokens)."""
        x = pose2d[..., :2]
        if joint_mask is not None:
            mask = joint_mask if joint_mask.ndim == 3 else joint_mask[:, None].expand(-1, x.shape[1], -1)
            x = torch.where(mask.unsqueeze(-1), self.mask_token_2d.to(x.dtype), x)
        b, t, j = x.shape[:3]
        return temporal_features(
            self.shared, per_frame_features(self.encoder_2d, self.shared, x.reshape(b * t, j, 2)).view(b, t, -1)
        )

    def frame_features(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(N, J, C >= 2) frames -> (N, channels): the per-frame stage of centre-frame prediction (the 2D encoder
        and the shared spatial MLP; :meth:`centre_from_features` is the rest). Evaluation mode only: there
        batch norm is a fixed per-frame map, so a frame's features do not depend on the other frames of the
        call and :func:`finetune.windows.predict_sequence` computes them once per frame of a sequence, not once
        per window.

        Raises:
            RuntimeError: the lifter is in training mode. ValueError: wrong shape.
        """
        _require_eval(self, "frame_features")
        if pose2d.ndim != 3 or pose2d.shape[1] != self.cfg.joints or pose2d.shape[2] < 2:
            raise ValueError(
                f"frame_features expects pose2d of shape (N, {self.cfg.joints}, >=2), got {tuple(pose2d.shape)}"
            )
        return per_frame_features(self.encoder_2d, self.shared, pose2d)

    def centre_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, channels) windows of :meth:`frame_features` -> (B, J, 3): the centre frame's prediction, computing
        only what it needs (the shared temporal transformer, then the strided layers and head, or the decoder
        for the centre query alone; never the discarded sequence head). Evaluation mode only.

        Raises:
            RuntimeError: the lifter is in training mode. ValueError: wrong shape.
        """
        _require_eval(self, "centre_from_features")
        if features.ndim != 3 or features.shape[1] != self.frames or features.shape[2] != self.cfg.channels:
            raise ValueError(
                f"centre_from_features expects features of shape (B, {self.frames}, {self.cfg.channels}), "
                f"got {tuple(features.shape)}"
            )
        x = temporal_features(self.shared, features)
        if self.centre_head == "decoder":
            return decoder_centre(self.seq_head, x, self.dec_pos_emb)
        return self.head(self.reduce(x))[:, 0]

    def predict_centre(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, T, J, C) windows -> (B, J, 3): the centre-frame prediction of each window, ``forward()[0]`` without
        the sequence head, as :meth:`centre_from_features` of :meth:`frame_features` (the same computation
        :func:`finetune.windows.predict_sequence` shares between neighbouring windows). Evaluation mode only.

        Raises:
            RuntimeError: the lifter is in training mode (training calls ``forward``). ValueError: wrong shape.
        """
        _require_eval(self, "predict_centre")
        if pose2d.ndim != 4 or pose2d.shape[1] != self.frames:
            raise ValueError(
                f"predict_centre expects pose2d of shape (B, {self.frames}, {self.cfg.joints}, >=2), "
                f"got {tuple(pose2d.shape)}"
            )
        b, t, j, c = pose2d.shape
        return self.centre_from_features(self.frame_features(pose2d.reshape(b * t, j, c)).view(b, t, -1))

    def predict_clip(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, T, J, C) -> (B, T, J, 3): the sequence head, every frame of the clip (sequence-to-sequence
        evaluation's predictor; the strided reduction to the centre frame is skipped)."""
        return self._sequence(self._features(pose2d))

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Copy the pretraining network's ``encoder_2d``, ``shared``, ``mask_token_2d``, ``decoder_3d`` (as
        ``seq_head``) and ``dec_pos_emb`` weights (:data:`PRETRAINED`).

        Args:
            state_dict: a :class:`pretrain.model.MPM` state dict (keys as that module names them).

        Returns:
            the loaded keys.

        Raises:
            ValueError: a needed key is missing or has another shape (a different preset or joint count).
        """
        own = self.state_dict()
        source = {k: PRETRAINED[p] + k[len(p) :] for k in own for p in PRETRAINED if k.startswith(p)}
        missing = [v for v in source.values() if v not in state_dict]
        if missing:
            raise ValueError(f"pretrained weights lack {len(missing)} keys the lifter needs, e.g. {missing[:3]}")
        bad = [
            f"{v}: {tuple(state_dict[v].shape)} vs {tuple(own[k].shape)}"
            for k, v in source.items()
            if state_dict[v].shape != own[k].shape
        ]
        if bad:
            raise ValueError(f"pretrained weights do not fit this lifter's sizes: {bad[:3]}")
        self.load_state_dict({k: state_dict[v] for k, v in source.items()}, strict=False)
        return list(source)

    def freeze(self, *prefixes: str) -> None:
        """Stop training the named submodules (e.g. ``"shared"``): no gradients, and their batch norms
        stay in evaluation mode."""
        for name in prefixes:
            for p in getattr(self, name).parameters():
                p.requires_grad_(False)
        self.frozen = tuple(prefixes)
        self.train(self.training)

    def train(self, mode: bool = True) -> Lifter:
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self


def lifting_loss(
    centre: torch.Tensor,
    sequence: torch.Tensor | None,
    target: torch.Tensor,
    valid: torch.Tensor,
    lambda_ft: float = 1.0,
    lambda_seq: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lambda_ft * MPJPE(centre) + lambda_seq * MPJPE(sequence)`` (MPM ``trainutils/finetune_epoch.py``:
    ``mpjpe_cal(pred_out, out_target) + mpjpe_cal(output_3D_single, out_target_single)``); without a sequence
    (a centre-frame backbone, :class:`finetune.backbone_lifter.BackboneLifter`) ``lambda_ft * MPJPE(centre)``,
    VideoPose3D's and PoseFormer's loss.

    Args:
        centre: (B, J, 3); sequence: (B, T, J, 3) or None; target: (B, T, J, 3) metres root-relative;
        valid: (B, T) bool, frames with usable 3D (invalid frames do not count).

    Returns:
        (loss, {"mpjpe_centre", "mpjpe_seq" (with a sequence)} as detached scalar tensors in metres, on the
        loss's device: reading them is left to the log interval, so a training step does not wait for the device).
    """
    mid = target.shape[1] // 2
    l_ft = masked_mpjpe(centre[:, None], target[:, mid : mid + 1], valid[:, mid : mid + 1])
    if sequence is None:
        return lambda_ft * l_ft, {"mpjpe_centre": l_ft.detach()}
    l_seq = masked_mpjpe(sequence, target, valid)
    loss = lambda_ft * l_ft + lambda_seq * l_seq
    return loss, {"mpjpe_centre": l_ft.detach(), "mpjpe_seq": l_seq.detach()}
