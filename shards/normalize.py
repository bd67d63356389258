"""The 2D normalisation every stage agrees on (DESIGN.md, "Canonical conventions")."""

from __future__ import annotations

import numpy as np


def normalize_2d(pose2d: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels -> normalised image coordinates: ``x / w * 2 - [1, h / w]`` (MotionBERT / VideoPose3D
    ``normalize_screen_coordinates``), so x spans [-1, 1] and y keeps the aspect ratio.

    Args:
        pose2d: (..., J, >=2) pixel coordinates (a confidence channel, if any, is ignored).
        width, height: image size in pixels.

    Returns:
        (..., J, 2) normalised x, y, in the input's floating dtype (float64 for integer input).
    """
    xy = np.asarray(pose2d)[..., :2]
    dtype = xy.dtype if np.issubdtype(xy.dtype, np.floating) else np.float64
    return (xy / width * 2 - np.array([1.0, height / width])).astype(dtype, copy=False)
