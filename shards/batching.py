"""The stream's window shuffle buffer, batching and collation (:mod:`shards.stream`).

Written by hand rather than with webdataset's ``shuffle`` / ``batched`` stages: the buffer holds whole
decoded segments (each a few hundred windows) and draws windows from them, so it mixes as many segments as
webdataset's per-sample buffer would need hundreds of thousands of windows for, in a few megabytes; and the
collation writes into recycled arrays (:class:`BufferPool`), which doubled the loader's rate at T = 243
(``python -m shards.bench``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from shards.codec import flip, joint_set
from shards.decode import Decoded

if TYPE_CHECKING:
    from shards.stream import StreamConfig


class BufferPool:
    """Batch arrays recycled once nothing outside the pool references them (a tensor made by
    ``torch.from_numpy``, and every view of it, holds a reference to its array: CPython's reference count,
    ``sys.getrefcount``, says when the last batch using an array is gone). Fresh multi-megabyte arrays cost
    a page fault per 4 KiB page; recycling them doubled the loader's throughput on T = 243."""

    def __init__(self, limit: int = 48):
        self.limit = limit
        self.arrays: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype``: a free recycled one, else a new one (kept while the pool
        holds fewer than ``limit``)."""
        for i in range(len(self.arrays)):
            # 2 references: the pool's list and getrefcount's argument
            if self.arrays[i].shape == shape and self.arrays[i].dtype == dtype and sys.getrefcount(self.arrays[i]) == 2:
                return self.arrays[i]
        array = np.empty(shape, dtype)
        if len(self.arrays) < self.limit:
            self.arrays.append(array)
        return array


def shuffle_windows(segments: Iterator[Decoded], size: int, rng: random.Random) -> Iterator[tuple[Decoded, int]]:
    """Shuffle buffer over windows: up to ``size`` decoded segments are open at once and
    each window (segment, offset) is drawn from a uniformly chosen open segment (whose own window order
    is already shuffled); a segment leaves the buffer when its windows are spent."""
    size = max(1, size)
    pool: list[Decoded] = []  # the open segments
    rand = rng.random
    source = iter(segments)
    more = True
    while True:
        while more and len(pool) < size:
            seg = next(source, None)
            more = seg is not None
            if more:
                pool.append(seg)
        if not pool:
            return
        i = int(rand() * len(pool))
        seg = pool[i]
        yield seg, seg.offsets.pop()
        if not seg.offsets:
            pool[i] = pool[-1]
            pool.pop()


def batches(
    windows: Iterator[tuple[Decoded, int]], cfg: StreamConfig, rng: random.Random, pool: BufferPool
) -> Iterator[dict]:
    """Batches of ``cfg.options.batch_size`` windows (:func:`collate`); the last batch of a finite stream may be
    short."""
    batch: list[tuple[Decoded, int]] = []
    for window in windows:
        batch.append(window)
        if len(batch) == cfg.options.batch_size:
            yield collate(batch, cfg, rng, pool)
            batch = []
    if batch:
        yield collate(batch, cfg, rng, pool)


def collate(batch: list[tuple[Decoded, int]], cfg: StreamConfig, rng: random.Random, pool: BufferPool) -> dict:
    """One batch of the batch contract (:mod:`shards.stream`) from (segment, window offset) pairs, each window
    mirrored with probability 1/2 when ``cfg.options.flip`` (:func:`shards.codec.flip`; ``camera``'s c_x and
    ``root``'s x negated with it)."""
    T = cfg.options.clip_len
    first = batch[0][0].arrays
    out = {k: pool.get((len(batch), T, *v.shape[1:]), v.dtype) for k, v in first.items()}
    keys = list(out)
    targets = [out[k] for k in keys]
    for b, (seg, o) in enumerate(batch):
        arrays, end = seg.arrays, o + T
        for k, target in zip(keys, targets, strict=True):
            target[b] = arrays[k][o:end]
    if cfg.options.flip:
        flipped = np.array([rng.random() < 0.5 for _ in batch])
        target = joint_set(cfg.options.joints)
        for k in ("pose2d", "pose3d", "pose3d_norm"):
            if k in out:
                out[k][flipped] = flip(out[k][flipped], target)
        if "camera" in out:  # the mirrored image's principal point: c_x -> -c_x (normalised units)
            out["camera"][flipped, :, 2] *= -1
        if "root" in out:  # the mirrored scene's pelvis: x -> -x
            out["root"][flipped, :, 0] *= -1
    result = {k: torch.from_numpy(v) for k, v in out.items()}
    result["dataset"] = torch.tensor([seg.dataset for seg, _ in batch], dtype=torch.int64)
    result["paired"] = torch.tensor([seg.paired for seg, _ in batch], dtype=torch.bool)
    if cfg.options.with_keys:
        result["sequence"] = [seg.seq_id for seg, _ in batch]
        result["start"] = torch.tensor([seg.start + o for seg, o in batch], dtype=torch.int64)
        result["shard"] = [seg.shard for seg, _ in batch]
    return result
