"""Centre-frame inference over whole sequences: joint selection, the 2D input of a store sequence (the
training windows' normalisation), one window per frame with edge padding, optional flip test-time augmentation.

The evaluation protocols (VideoPose3D ``run.py`` evaluate / MPM ``trainutils/finetune_epoch.py``) predict
every frame of a test sequence from the window of ``T`` frames centred on it; windows that run past either
end of the sequence repeat the first or last frame (``np.pad(..., 'edge')``, as the reference generators'
``ChunkedGenerator``). With flip augmentation, the horizontally mirrored input (normalised x -> -x, left and
right joints swapped) is predicted too, its output mirrored back (3D x -> -x, joints swapped back) and the
two predictions averaged (MPM ``input_augmentation``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ingest.skeleton import H36M16, H36M17, H36M17_TO_16, JointSet
from ingest.store import Sequence
from shards.normalize import normalize_2d


def select_joints(joints: np.ndarray, joint_set: JointSet) -> np.ndarray:
    """Store arrays (..., 17, C) in Human3.6M-17 order -> the joints of ``joint_set`` (H36M17 or H36M16,
    which drops neck/nose). Raises ValueError for other joint sets."""
    if joint_set is H36M17:
        return joints
    if joint_set is H36M16:
        return joints[..., H36M17_TO_16, :]
    raise ValueError(f"evaluation supports joint sets h36m17 and h36m16, not {joint_set.name!r}")


def sequence_input_2d(seq: Sequence, joint_set: JointSet) -> np.ndarray:
    """The lifter's 2D input for a whole store sequence: (N, J, 2) float32 normalised image coordinates of
    ``joint_set``, computed exactly as the shard writer computes the training windows (float64
    :func:`shards.normalize.normalize_2d`, then float32), so a training window and the evaluation window of
    the same frames are bit-identical (``tests/test_shards_stream.py``)."""
    width, height = float(seq.meta["width"]), float(seq.meta["height"])
    pose2d = np.asarray(select_joints(seq.pose2d, joint_set), dtype=np.float64)
    return normalize_2d(pose2d, width, height).astype(np.float32)


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
    padded = np.pad(x, [(pad, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, frames, axis=0)  # (N, ..., T)
    return np.moveaxis(view, -1, 1)


def flip_2d(x: torch.Tensor, joint_set: JointSet) -> torch.Tensor:
    """Mirror normalised 2D poses (..., J, C >= 1) horizontally: x -> -x, left/right joints swapped.
    Normalised x is centred on the image's vertical midline (DESIGN.md), so -x is the flipped image."""
    out = x[..., torch.as_tensor(joint_set.flip_permutation()), :].clone()
    out[..., 0] = -out[..., 0]
    return out


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
    perm = torch.as_tensor(joint_set.flip_permutation())
    out = []
    for start in range(0, len(windows), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(windows[start:start + batch_size])).to(device)
        pred = predict(batch).float()
        if flip:
            mirrored = predict(flip_2d(batch, joint_set)).float()[..., perm, :]
            mirrored[..., 0] = -mirrored[..., 0]
            pred = (pred + mirrored) / 2
        out.append(pred.cpu().numpy())
    return np.concatenate(out)
