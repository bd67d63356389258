"""Segments and windows: how a sequence is cut into overlapping segments and which windows each one owns.

A sequence of ``n`` frames is cut into segments of at most ``segment_len`` frames; consecutive segments
start ``step = segment_len - clip_len + 1`` frames apart, so they overlap by ``clip_len - 1`` frames and
every window of at most ``clip_len`` frames lies whole inside at least one segment. To produce each window
exactly once, segment ``k`` *owns* the window starts ``t`` with ``k * step <= t < own_end`` where
``own_end = (k + 1) * step`` (the last segment owns every start up to the sequence's end). A window of
``T <= clip_len`` frames at stride ``s`` starts at every ``t`` with ``t % s == 0`` and ``t + T <= n``
(frame indices of the whole sequence). A sequence shorter than ``T`` yields one window at ``t = 0``, padded
by repeating its last frame (edge replication).
"""

from __future__ import annotations

from typing import NamedTuple


class Segment(NamedTuple):
    """One segment of a sequence: frames ``start:stop`` and owned window starts ``start:own_end``
    (frame indices of the sequence); ``seq_frames`` is the sequence length."""

    start: int
    stop: int
    own_end: int
    seq_frames: int


def cut_segments(n: int, segment_len: int, clip_len: int) -> list[Segment]:
    """Segments of a sequence of ``n`` frames (module docstring).

    Raises:
        ValueError: ``n < 1``, ``clip_len < 1`` or ``segment_len < clip_len``.
    """
    if n < 1 or clip_len < 1 or segment_len < clip_len:
        raise ValueError(
            f"cannot cut {n} frames into segments of {segment_len} with clip length {clip_len}: "
            f"need n >= 1, clip_len >= 1 and segment_len >= clip_len"
        )
    if n <= segment_len:
        return [Segment(0, n, n, n)]
    step = segment_len - clip_len + 1
    count = -(-(n - segment_len) // step) + 1
    return [
        Segment(k * step, min(k * step + segment_len, n), (k + 1) * step if k < count - 1 else n, n)
        for k in range(count)
    ]


def window_starts(seg: Segment, clip_len: int, stride: int = 1) -> range:
    """Starts (sequence frame indices) of the windows of ``clip_len`` frames at ``stride`` that ``seg``
    owns; a sequence shorter than ``clip_len`` gives ``range(0, 1)`` in its first segment (padded window).

    Raises:
        ValueError: ``clip_len < 1`` or ``stride < 1``.
    """
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len ({clip_len}) and stride ({stride}) must be >= 1")
    if seg.seq_frames < clip_len:
        return range(0, 1 if seg.start == 0 else 0)
    first = -(-seg.start // stride) * stride
    return range(first, min(seg.own_end, seg.seq_frames - clip_len + 1), stride)


def count_windows(seg: Segment, clip_len: int, stride: int = 1) -> int:
    """``len(window_starts(seg, clip_len, stride))``."""
    return len(window_starts(seg, clip_len, stride))
