"""Centre-frame inference over whole sequences: one window per frame with edge padding, optional flip
test-time augmentation. The input of a store sequence and its ground truth come from the sample codec
(:func:`shards.codec.sequence_input_2d`, :func:`shards.codec.sequence_truth_3d`), as the training windows do.

The evaluation protocols (VideoPose3D ``run.py`` evaluate / MPM ``trainutils/finetune_epoch.py``) predict
every frame of a test sequence from the window of ``T`` frames centred on it; windows that run past either
end of the sequence repeat the first or last frame (``np.pad(..., 'edge')``, as the reference generators'
``ChunkedGenerator``). With flip augmentation, the horizontally mirrored input (normalised x -> -x, left and
right joints swapped) is predicted too, its output mirrored back (3D x -> -x, joints swapped back) and the
two predictions averaged (MPM ``input_augmentation``); both mirrors are :func:`shards.codec.flip`.

Sequence-to-sequence evaluation (MotionBERT's protocol, :func:`predict_clips`) predicts every frame once from
consecutive clips of ``T`` frames through the sequence head instead: about ``T`` times fewer forward passes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ingest.skeleton import JointSet
from shards import codec

# (B, T, J, C) windows -> (B, J, 3) centre-frame prediction; C as the model expects (2 for MPM's lifter).
Predictor = Callable[[torch.Tensor], torch.Tensor]
# (B, T, J, C) clips -> (B, T, J, 3): a prediction for every frame of each clip (sequence-to-sequence).
ClipPredictor = Callable[[torch.Tensor], torch.Tensor]
PROTOCOLS = ("centre", "seq2seq")  # centre-frame (MPM / VideoPose3D) and sequence-to-sequence (MotionBERT)


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
    if frames < 1 or frames % 2 == 0:
        raise ValueError(f"window length must be odd and positive, got {frames}")
    if len(x) == 0:
        raise ValueError("cannot cut windows from an empty sequence")
    pad = frames // 2
    padded = codec.pad_edge(x, pad, pad)
    view = np.lib.stride_tricks.sliding_window_view(padded, frames, axis=0)  # (N, ..., T)
    return np.moveaxis(view, -1, 1)


@torch.no_grad()
def predict_sequence(
    predict: Predictor,
    pose2d: np.ndarray,
    frames: int,
    joint_set: JointSet,
    flip: bool = False,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Centre-frame prediction for every frame of one sequence.

    Args:
        predict: model call, (B, T, J, C) float tensor -> (B, J, 3) (the centre frame's 3D pose).
        pose2d: (N, J, C) normalised 2D input of the whole sequence, joints in ``joint_set`` order.
        frames: window length T (odd).
        joint_set: joint order, for the flip's left/right swap.
        flip: average with the prediction of the mirrored input.
        batch_size: windows per model call.
        device: where the model runs.

    Returns:
        (N, J, 3) float32 numpy array, the model's units (metres for MPM's lifter).
    """
    windows = centred_windows(np.asarray(pose2d, dtype=np.float32), frames)
    out = []
    for start in range(0, len(windows), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size])).to(device)
        pred = predict(batch).float()
        if flip:
            pred = (pred + codec.flip(predict(codec.flip(batch, joint_set)).float(), joint_set)) / 2
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
