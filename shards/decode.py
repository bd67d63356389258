"""Decoding a shard sample into the arrays of the stream's windows (:mod:`shards.stream`, "Batch contract")."""

from __future__ import annotations

import io
import json
import random
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from shards import DATASETS
from shards.codec import joint_set, normalize_3d, normalize_camera, pad_edge, select_joints
from shards.layout import Segment, window_starts
from shards.manifest import url_name
from shards.mixtures import selected

if TYPE_CHECKING:
    from shards.stream import StreamConfig


@dataclass
class Decoded:
    """A decoded segment: arrays (n, ...) of the frames and the window offsets it still has to emit."""

    arrays: dict[str, np.ndarray]
    dataset: int
    seq_id: str
    start: int
    shard: str
    offsets: list[int] = field(default_factory=list)
    paired: bool = True


def valid_frames(n: int, invalid: list[list[int]]) -> np.ndarray:
    """(n,) bool: False on the [first, last + 1) ranges of ``invalid`` (``meta.json``'s ``invalid2d`` /
    ``invalid3d``)."""
    valid = np.ones(n, bool)
    for a, b in invalid:
        valid[a:b] = False
    return valid


def decode_segment(sample: dict, cfg: StreamConfig, rng: random.Random) -> Decoded | None:
    """The decoded segment of a webdataset sample (``meta.json``, ``pose2d.npy``, ``pose3d.npy``,
    ``root.npy``) as the stream needs it: the selected windows' offsets (shuffled, thinned to a lighter
    subject's rate when resampled), the modalities its mixture share grants (others zeros and invalid; 2D only
    for a segment drawn as unlabelled, :meth:`Share.unlabelled`, when resampled), the
    2.5D 3D and the camera when asked, the joint subset and edge padding of a sequence shorter than a window
    (:mod:`shards.codec`). None when the mixture does not select it or no window is left.

    Raises:
        KeyError / ValueError: a damaged sample (missing member, wrong shapes, a payload that fails the CRC-32
            of its ``meta.json``), naming its key.
        RuntimeError: ``normalize_3d`` without a focal length, or ``with_camera`` without intrinsics, in the
            metadata.
    """
    meta = json.loads(sample["meta.json"])
    share = cfg.shares.get(meta["dataset"])
    if not selected(meta["id"], share, meta.get("subject")):
        return None
    granted, unlabelled = share.modalities(meta.get("subject")), share.unlabelled(meta.get("subject"))
    if cfg.options.resampled and unlabelled and rng.random() < unlabelled:
        granted = ("2d",)  # streamed as unlabelled: its 2D only
    seg = Segment(meta["start"], meta["stop"], meta["own_end"], meta["seq_frames"])
    offsets = [t - seg.start for t in window_starts(seg, cfg.options.clip_len, cfg.options.stride)]
    rate = share.rate(meta.get("subject"))
    if cfg.options.resampled and rate < 1.0:  # a lighter subject's windows are thinned to its weight
        offsets = [o for o in offsets if rng.random() < rate]
    if not offsets:
        return None
    for member, crc in meta.get("crc32", {}).items():  # shards written before checksums carry none
        if zlib.crc32(sample[member]) != crc:
            raise ValueError(f"{sample['__key__']}: {member} fails its CRC-32 check (a damaged shard)")
    dtype = np.dtype(cfg.options.dtype)
    p2 = np.load(io.BytesIO(sample["pose2d.npy"])).astype(dtype, copy=False)
    p3 = np.load(io.BytesIO(sample["pose3d.npy"])).astype(dtype, copy=False)
    n = seg.stop - seg.start
    if p2.shape != (n, 17, 3) or p3.shape != (n, 17, 3):
        raise ValueError(f"{sample['__key__']}: pose2d {p2.shape} / pose3d {p3.shape}, expected ({n}, 17, 3)")
    if "2d" not in granted:  # a modality the mixture does not grant is never read (zeros, invalid)
        p2 = np.zeros_like(p2)
    if "3d" not in granted:
        p3 = np.zeros_like(p3)
    arrays = {
        "pose2d": p2,
        "pose3d": p3,
        "valid2d": valid_frames(n, meta["invalid2d"]) & ("2d" in granted),
        "valid3d": valid_frames(n, meta["invalid3d"]) & ("3d" in granted),
    }
    if cfg.options.normalize_3d:
        if not meta.get("f"):
            raise RuntimeError(
                f"{sample.get('__url__')}: sequence {meta['id']} has no focal length 'f' in its "
                f"metadata; normalize_3d needs it"
            )
        z = np.load(io.BytesIO(sample["root.npy"]))[:, 2]
        arrays["pose3d_norm"] = normalize_3d(p3, z, meta["f"][0], meta["width"])
    if cfg.options.with_camera:
        if not meta.get("f") or not meta.get("c"):
            raise RuntimeError(
                f"{sample.get('__url__')}: sequence {meta['id']} has no intrinsics 'f' and 'c' in its metadata; "
                "with_camera needs them"
            )
        camera = normalize_camera(meta["f"], meta["c"], meta["width"], meta["height"]).astype(np.float32)
        arrays["camera"] = np.broadcast_to(camera, (n, 4))
        root = np.load(io.BytesIO(sample["root.npy"])).astype(np.float32, copy=False)
        arrays["root"] = root if "3d" in granted else np.zeros_like(root)
    target = joint_set(cfg.options.joints)
    arrays = {k: select_joints(v, target) if v.ndim == 3 else v for k, v in arrays.items()}
    if n < cfg.options.clip_len:  # a sequence shorter than a window: edge replication, padded frames invalid
        arrays = {k: pad_edge(v, 0, cfg.options.clip_len - n) for k, v in arrays.items()}
        arrays["valid2d"][n:] = arrays["valid3d"][n:] = False
    rng.shuffle(offsets)
    return Decoded(
        arrays,
        DATASETS.index(meta["dataset"]),
        meta["id"],
        seg.start,
        url_name(cfg.root, sample.get("__url__", "?")),
        offsets,
        "pairs" in granted,
    )
