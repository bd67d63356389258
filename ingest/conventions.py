"""The conventions every stage agrees on that are not joint sets (those are in :mod:`ingest.skeleton`);
DESIGN.md, "Canonical conventions" and "The motion store".
"""

from __future__ import annotations

import numpy as np

# The motion store's frame rate (Hz). 50 fps is Human3.6M's native rate, so the largest dataset and the
# standard evaluation protocols use their frames unchanged; other rates are resampled to it by interpolation
# (:func:`resample_times`), never by dropping frames at a non-integer ratio (DESIGN.md).
STORE_FPS = 50.0

# The datasets of the motion store, by their store names. Their order fixes the dataset ids carried by every
# shard batch (``batch["dataset"]`` indexes this tuple; :mod:`shards`).
DATASETS = ("h36m", "mpi_inf_3dhp", "amass")


def resample_times(n: int, fps: float, target: float = STORE_FPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the frames of ``n`` source frames at ``fps`` fall when resampled to ``target`` fps.

    Output frame k is at time k / target; M = floor((n - 1) target / fps) + 1 output frames (within 1e-9),
    so the duration is kept within one output frame.

    Returns:
        (i0, i1, w), each (M,): for each output frame the source frames it lies between (int64, ``i1 = i0 + 1``
        clipped to the last frame) and the weight of ``i1`` (float64 in [0, 1)); linear interpolation is
        ``a[i0] * (1 - w) + a[i1] * w``. ``w`` is snapped to exactly 0 where the output time falls on a source
        frame (within 1e-9 frame), so ``w == 0`` marks output frames that are source frames.

    Raises:
        ValueError for ``n < 1`` or ``fps <= 0``.
    """
    if n < 1 or fps <= 0:
        raise ValueError(f"cannot resample {n} frames at {fps} fps")
    m = int(np.floor((n - 1) * target / fps + 1e-9)) + 1
    t = np.arange(m) * fps / target
    i0 = np.minimum(np.floor(t + 1e-9).astype(np.int64), n - 1)
    w = t - i0
    w[w < 1e-9] = 0.0
    return i0, np.minimum(i0 + 1, n - 1), w
