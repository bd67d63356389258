"""Centre-frame inference over whole sequences: one window per frame with edge padding, optional flip
test-time augmentation. The input of a store sequence and its ground truth come from the sample codec
(:func:`shards.codec.sequence_input_2d`, :func:`shards.codec.sequence_truth_3d`), as the training windows do.

The evaluation protocols (VideoPose3D ``run.py`` evaluate / MPM ``trainutils/finetune_epoch.py``) predict
every frame of a test sequence from the window of ``T`` frames centred on it; windows that run past either
end of the sequence repeat the first or last frame (``np.pad(..., 'edge')``, as the reference generators'
``ChunkedGenerator``). With flip augmentation, the horizontally mirrored input (normalised x -> -x, left and
right joints swapped) is predicted too, its output mirrored back (3D x -> -x, joints swapped back) and the
two predictions averaged (MPM ``input_augmentation``); both mirrors are :func:`shards.codec.flip`.

A window's prediction costs one forward pass, so :func:`predict_sequence` shares what neighbouring windows
share: a :class:`CentrePredictor` runs its per-frame layers once per frame of the sequence (and of its
mirror image), the windows are cut from the per-frame features, and only the temporal part runs per window.

Sequence-to-sequence evaluation (MotionBERT's protocol, :func:`predict_clips`) predicts every frame once from
consecutive clips of ``T`` frames through the sequence head instead: about ``T`` times fewer forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from ingest.skeleton import JointSet
from shards import codec


class CentrePredictor(Protocol):
    """Centre-frame prediction in two stages, so that neighbouring windows share the per-frame one:
    ``frame_features`` (N, J, C) frames -> (N, ...) features, one row per frame, each depending on its own
    frame only (a network in evaluation mode: batch norm is then a fixed per-frame map), and
    ``centre_from_features`` (B, T, ...) windows of those features -> (B, J, 3), the centre frame's 3D pose.
    :class:`finetune.model.Lifter` and :class:`finetune.evaluate.PretrainedLift` are such predictors;
    :class:`PerWindow` makes one of a plain window function."""

    def frame_features(self, pose2d: torch.Tensor) -> torch.Tensor: ...

    def centre_from_features(self, features: torch.Tensor) -> torch.Tensor: ...


class PerWindow:
    """A :class:`CentrePredictor` with no per-frame stage (its features are the frames themselves) around a
    window function ``predict`` (B, T, J, C) -> (B, J, 3): baselines and test predictors."""

    def __init__(self, predict: Callable[[torch.Tensor], torch.Tensor]):
        self.predict = predict

    def frame_features(self, pose2d: torch.Tensor) -> torch.Tensor:
        return pose2d

    def centre_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.predict(features.contiguous())


# (B, T, J, C) clips -> (B, T, J, 3): a prediction for every frame of each clip (sequence-to-sequence).
ClipPredictor = Callable[[torch.Tensor], torch.Tensor]
PROTOCOLS = ("centre", "seq2seq")  # centre-frame (MPM / VideoPose3D) and sequence-to-sequence (MotionBERT)
# Bytes of window features per centre_from_features call: sets the batch of windows (centre_batch_size). 4 MiB
# keeps a call's activations near the caches: MPM's 243-frame lifter (C 256) then takes 16 windows a call, which
# scored a median 79 windows/s against 76 with 8 and 74 with 33 (8 MiB), 6 interleaved runs each on 2 cores.
WINDOW_FEATURE_BYTES = 4 * 2**20
FRAME_CHUNK = 4096  # frames per frame_features call


def centred_windows(x: np.ndarray, frames: int) -> np.ndarray:
    """All windows of ``frames`` frames centred on each frame of ``x``, edges padded by repetition.

    Args:
        x: (N, ...) per-frame array.
        frames: odd window length T.

    Returns:
        (N, T, ...) read-only view: row i is frames i - T//2 .. i + T//2, indices clamped to [0, N - 1].

    Raises:
        ValueError: even ``frames`` or empty ``x``.
    """
    _check_window(frames, len(x))
    pad = frames // 2
    padded = codec.pad_edge(x, pad, pad)
    view = np.lib.stride_tricks.sliding_window_view(padded, frames, axis=0)  # (N, ..., T)
    return np.moveaxis(view, -1, 1)


def _check_window(frames: int, n: int) -> None:
    if frames < 1 or frames % 2 == 0:
        raise ValueError(f"window length must be odd and positive, got {frames}")
    if n == 0:
        raise ValueError("cannot cut windows from an empty sequence")


def centred_feature_windows(features: torch.Tensor, frames: int) -> torch.Tensor:
    """:func:`centred_windows` of per-frame features: (N, ...) -> (N, T, ...), a view of the edge-padded
    features (one copy of the sequence, not T)."""
    _check_window(frames, len(features))
    pad = frames // 2
    first, last = features[:1].expand(pad, *features.shape[1:]), features[-1:].expand(pad, *features.shape[1:])
    padded = torch.cat([first, features, last])
    return padded.unfold(0, frames, 1).movedim(-1, 1)


def centre_batch_size(frames: int, frame_bytes: int) -> int:
    """Windows per :meth:`CentrePredictor.centre_from_features` call: as many as keep their features (``frames``
    rows of ``frame_bytes`` each) within :data:`WINDOW_FEATURE_BYTES`, at least one."""
    return max(1, WINDOW_FEATURE_BYTES // (frames * frame_bytes))


@torch.no_grad()
def predict_sequence(
    predictor: CentrePredictor,
    pose2d: np.ndarray,
    frames: int,
    joint_set: JointSet,
    flip: bool = False,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Centre-frame prediction for every frame of one sequence.

    The per-frame stage runs once per frame of the sequence (and of its mirror image with ``flip``), the
    windows are cut from its features with the edge padding of :func:`centred_windows` (a repeated frame has
    the same features), and only ``centre_from_features`` runs per window: the same predictions as cutting
    the 2D windows first and running the whole predictor on each (``tests/test_finetune_evaluate.py``).

    Args:
        predictor: a :class:`CentrePredictor` (a lifter in evaluation mode; :class:`PerWindow` for a window
            function).
        pose2d: (N, J, C) normalised 2D input of the whole sequence, joints in ``joint_set`` order.
        frames: window length T (odd).
        joint_set: joint order, for the flip's left/right swap.
        flip: average with the prediction of the mirrored input.
        batch_size: windows per ``centre_from_features`` call; default :func:`centre_batch_size`.
        device: where the model runs.

    Returns:
        (N, J, 3) float32 numpy array, the model's units (metres for MPM's lifter).
    """
    _check_window(frames, len(pose2d))
    x = torch.from_numpy(np.asarray(pose2d, dtype=np.float32)).to(device)
    inputs = [x, codec.flip(x, joint_set)] if flip else [x]
    windows = [
        centred_feature_windows(torch.cat([predictor.frame_features(c) for c in seq.split(FRAME_CHUNK)]), frames)
        for seq in inputs
    ]
    feature = windows[0][0, 0]
    batch = batch_size or centre_batch_size(frames, feature.numel() * feature.element_size())
    out = []
    for start in range(0, len(x), batch):
        pred = predictor.centre_from_features(windows[0][start : start + batch]).float()
        if flip:
            mirrored = predictor.centre_from_features(windows[1][start : start + batch]).float()
            pred = (pred + codec.flip(mirrored, joint_set)) / 2
        out.append(pred.cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def predict_clips(
    predict: ClipPredictor,
    pose2d: np.ndarray,
    frames: int,
    joint_set: JointSet,
    flip: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Sequence-to-sequence prediction of every frame of one sequence (MotionBERT's evaluation).

    The sequence is cut into consecutive clips of ``frames`` frames from its first frame; when the clips do not
    end on its last frame, one more clip ends there (overlapping the previous one, whose predictions the
    overlapped frames keep); a sequence shorter than a clip is edge-padded. Flip averaging as in
    :func:`predict_sequence`.

    Args:
        predict: model call, (B, T, J, C) float tensor -> (B, T, J, 3).
        pose2d: (N, J, C) normalised 2D input of the whole sequence, joints in ``joint_set`` order.

    Returns:
        (N, J, 3) float32 numpy array, the model's units.
    """
    x = np.asarray(pose2d, dtype=np.float32)
    n = len(x)
    if n == 0:
        raise ValueError("cannot cut clips from an empty sequence")
    if n < frames:
        x = codec.pad_edge(x, 0, frames - n)
    starts = list(range(0, len(x) - frames + 1, frames))
    if starts[-1] + frames < len(x):
        starts.append(len(x) - frames)
    clips = np.stack([x[s : s + frames] for s in starts])
    preds = []
    for first in range(0, len(clips), batch_size):
        batch = torch.from_numpy(clips[first : first + batch_size]).to(device)
        pred = predict(batch).float()
        if flip:
            pred = (pred + codec.flip(predict(codec.flip(batch, joint_set)).float(), joint_set)) / 2
        preds.append(pred.cpu().numpy())
    preds = np.concatenate(preds)
    out = np.empty((len(x), *preds.shape[2:]), np.float32)
    for s, p in reversed(list(zip(starts, preds, strict=True))):  # the earlier clip wins an overlapped frame
        out[s : s + frames] = p
    return out[:n]
