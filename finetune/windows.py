"""Centre-frame inference over whole sequences: one window per frame with edge padding, optional flip
test-time augmentation. The input of a store sequence and its ground truth come from the sample codec
(:func:`shards.codec.sequence_input_2d`, :func:`shards.codec.sequence_truth_3d`), as the training windows do.

The evaluation protocols (VideoPose3D ``run.py`` evaluate / MPM ``trainutils/finetune_epoch.py``) predict
every frame of a test sequence from the window of ``T`` frames centred on it; windows that run past either
end of the sequence repeat the first or last frame (``np.pad(..., 'edge')``, as the reference generators'
``ChunkedGenerator``). With flip augmentation, the horizontally mirrored input (normalised x -> -x, left and
right joints swapped) is predicted too, its output mirrored back (3D x -> -x, joints swapped back) and the
two predictions averaged (MPM ``input_augmentation``); both mirrors are :func:`shards.codec.flip`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ingest.skeleton import JointSet
from shards import codec

# (B, T, J, C) windows -> (B, J, 3) centre-frame prediction; C as the model expects (2 for MPM's lifter).
Predictor = Callable[[torch.Tensor], torch.Tensor]


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
def predict_sequence(predict: Predictor, pose2d: np.ndarray, frames: int, joint_set: JointSet,
                     flip: bool = False, batch_size: int = 1024, device: str | torch.device = "cpu",
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
        batch = torch.from_numpy(np.ascontiguousarray(windows[start:start + batch_size])).to(device)
        pred = predict(batch).float()
        if flip:
            pred = (pred + codec.flip(predict(codec.flip(batch, joint_set)).float(), joint_set)) / 2
        out.append(pred.cpu().numpy())
    return np.concatenate(out)
