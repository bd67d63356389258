"""``python -m shards build``: the motion store to webdataset shards of overlapping segments, on Ray.

Layout: ``SHARDS/<dataset>/<split>-%06d.tar`` plus ``SHARDS/manifest.json`` (:mod:`shards.manifest`).
Each sample is one segment (:mod:`shards.layout`) under the key ``<sequence id>__<start, 8 digits>`` (no
dots) with the members:

* ``pose2d.npy`` (n, 17, 3): x, y normalised as ``x / w * 2 - [1, h / w]`` and the confidence
  (:func:`shards.codec.encode_2d`, the one codec of training and evaluation samples); float32, or float16
  with ``--dtype float16`` (error <= 2**-12 of the half width, about 0.12 px at w = 1000);
* ``pose3d.npy`` (n, 17, 3): metres, camera coordinates, root-relative (joint 0, the pelvis, is zero;
  :func:`shards.codec.encode_3d`); float32, or float16 with ``--dtype float16`` unless that would move a
  joint of the segment by more than 0.5 mm, in which case the segment keeps float32 (counted as ``float32_fallback``);
* ``root.npy`` (n, 3) float32: the pelvis in camera coordinates, metres (absolute pose = pose3d + root);
* ``meta.json``: ``id, dataset, subject, action, camera, split, start, stop, own_end, seq_frames, fps,
  width, height, f, c`` and ``invalid2d`` / ``invalid3d``: [first, last + 1) frame ranges of the segment
  without usable 2D / 3D (the store's ``valid`` frame mask where the dataset has one, marked by
  ``valid_mask: true``, and any frame with a non-finite value); the values of those frames are stored as
  zeros; ``crc32``: the CRC-32 (``zlib.crc32``) of each ``.npy`` member, which the stream checks, so a
  damaged payload is a corrupt sample, never numbers in training.

Sequences of a dataset and split are ordered by :func:`shards.mixtures.selection_value` of their id (which
also mixes subjects and actions across shards) and packed into shards of about ``shard_size`` bytes. One
Ray task writes one shard, reading its sequences through :class:`ingest.store.MotionStore`; the tar is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import webdataset as wds
from tqdm import tqdm

from ingest.atomic import atomic_path
from ingest.job import ensure_ray
from ingest.store import MotionStore, Sequence
from shards import DATASETS
from shards.codec import encode_2d, encode_3d
from shards.layout import Segment, count_windows, cut_segments
from shards.manifest import MANIFEST, build_totals, load_manifest, open_root, write_manifest
from shards.mixtures import selection_value

FLOAT16_TOLERANCE_M = 0.5e-3
DEFAULT_COUNT_CLIP_LENS = (27, 81, 243)
STAGING_PREFIX = ".building-"  # the folder a build writes into before its shards replace the old ones
_META_KEYS = ("subject", "action", "camera", "split", "fps", "width", "height")


@dataclass
class ShardPlan:
    """What one shard holds: ``(sequence id, segments)`` in writing order."""

    dataset: str
    split: str
    name: str  # relative path, e.g. "h36m/train-000000.tar"
    sequences: list[tuple[str, list[Segment]]]


def plan_shards(
    store: MotionStore, dataset: str, segment_len: int, clip_len: int, shard_size: int, itemsize: int
) -> list[ShardPlan]:
    """Assign the segments of every sequence of ``dataset`` to shards of about ``shard_size`` bytes.

    The size estimate per frame is 2 * 17 * 3 * ``itemsize`` + 12 bytes, plus 3 KiB per segment (tar
    headers and meta.json). A sequence may span shards; a segment never does.
    """
    by_split: dict[str, list[tuple[float, str, int]]] = {}
    for entry in store.load_index(dataset)["parts"].values():
        offsets = entry["offsets"]
        for s, meta in enumerate(entry["sequences"]):
            n = offsets[s + 1] - offsets[s]
            if n > 0:
                by_split.setdefault(meta["split"], []).append((selection_value(meta["id"]), meta["id"], n))
    plans = []
    for split in sorted(by_split):
        groups: list[list[tuple[str, list[Segment]]]] = [[]]
        size = 0
        for _, seq_id, n in sorted(by_split[split]):
            for seg in cut_segments(n, segment_len, clip_len):
                seg_bytes = (seg.stop - seg.start) * (2 * 17 * 3 * itemsize + 12) + 3072
                if groups[-1] and size + seg_bytes > shard_size:
                    groups.append([])
                    size = 0
                group = groups[-1]
                if group and group[-1][0] == seq_id:
                    group[-1][1].append(seg)
                else:
                    group.append((seq_id, [seg]))
                size += seg_bytes
        plans += [ShardPlan(dataset, split, f"{dataset}/{split}-{i:06d}.tar", g) for i, g in enumerate(groups)]
    return plans


def _intervals(bad: np.ndarray) -> list[list[int]]:
    """[first, last + 1) ranges of the True runs of a 1-D bool mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))
    return edges.reshape(-1, 2).tolist()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_segment(seq: Sequence, seg: Segment, dataset: str, dtype: str) -> tuple[dict, bool]:
    """The webdataset sample of one segment (module docstring) and whether float16 had to fall back to
    float32 for its 3D.

    Raises:
        ValueError: naming the sequence when width or height is not positive.
    """
    meta = seq.meta
    width, height = float(meta["width"]), float(meta["height"])
    if width <= 0 or height <= 0:
        raise ValueError(f"sequence {meta['id']}: image size {width} x {height} must be positive")
    sl = slice(seg.start, seg.stop)
    valid = np.asarray(seq.frames["valid"][sl], bool) if "valid" in seq.frames else None
    p2, bad2 = encode_2d(seq.pose2d[sl], width, height, valid)
    rel64, root64, bad3 = encode_3d(seq.pose3d[sl], valid)
    root = root64.astype(np.float32)
    rel = rel64.astype(np.float32)
    fallback = False
    if dtype == "float16":
        p2 = p2.astype(np.float16)
        rel16 = rel.astype(np.float16)
        error = np.linalg.norm(rel16.astype(np.float64) - rel64, axis=-1)
        fallback = bool(error.size and error.max() > FLOAT16_TOLERANCE_M)
        rel = rel if fallback else rel16
    out_meta = {
        "id": meta["id"],
        "dataset": dataset,
        **{k: meta[k] for k in _META_KEYS},
        "start": seg.start,
        "stop": seg.stop,
        "own_end": seg.own_end,
        "seq_frames": seg.seq_frames,
        "f": meta.get("f"),
        "c": meta.get("c"),
        "valid_mask": "valid" in seq.frames,
        "invalid2d": _intervals(bad2),
        "invalid3d": _intervals(bad3),
    }
    arrays = {
        "pose2d.npy": _npy(p2.astype(np.float32) if dtype == "float32" else p2),
        "pose3d.npy": _npy(rel),
        "root.npy": _npy(root),
    }
    out_meta["crc32"] = {name: zlib.crc32(data) for name, data in arrays.items()}
    sample = {"__key__": f"{meta['id']}__{seg.start:08d}", "meta.json": json.dumps(out_meta).encode(), **arrays}
    return sample, fallback


class _HashingWriter:
    """A write-only stream that passes bytes on and keeps their sha256 and count."""

    def __init__(self, raw):
        self.raw, self.sha256, self.bytes = raw, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.raw.write(data)


def write_shard(
    store_url: str,
    storage_options: dict | None,
    out: str,
    plan: ShardPlan,
    dtype: str,
    count_clip_lens: tuple[int, ...],
) -> dict:
    """Write one shard under ``out`` (a path or fsspec URL; temporary name, then rename) and return its
    manifest record.

    Returns:
        {"name", "dataset", "split", "sha256", "bytes", "segments", "frames", "windows" {clip_len: count at
        stride 1}, "float32_fallback", "short" (sequences shorter than max(count_clip_lens) starting here),
        "index" [[sequence id, start, stop, own_end, seq_frames], ...], "subjects" {sequence id: subject}
        (for mixtures that select by subject, :mod:`shards.mixtures`)}.
    """
    view = MotionStore.open(store_url, storage_options)[plan.dataset]
    fs, root = open_root(out)
    index, frames, fallbacks, subjects = [], 0, 0, {}
    with atomic_path(f"{root}/{plan.name}", fs) as tmp, fs.open(tmp, "wb") as raw:
        stream = _HashingWriter(raw)
        with wds.TarWriter(stream, encoder=False, mtime=0, format="PAX_FORMAT") as sink:
            for seq_id, segments in plan.sequences:
                seq = view[seq_id]
                subjects[seq_id] = str(seq.meta["subject"])
                for seg in segments:
                    sample, fallback = encode_segment(seq, seg, plan.dataset, dtype)
                    sink.write(sample)
                    fallbacks += fallback
                    frames += seg.stop - seg.start
                    index.append([seq_id, *seg])
    segs = [Segment(*row[1:]) for row in index]
    longest = max(count_clip_lens)
    return {
        "name": plan.name,
        "dataset": plan.dataset,
        "split": plan.split,
        "sha256": stream.sha256.hexdigest(),
        "bytes": stream.bytes,
        "segments": len(index),
        "frames": frames,
        "windows": {str(t): sum(count_windows(s, t) for s in segs) for t in count_clip_lens},
        "float32_fallback": fallbacks,
        "short": sum(s.start == 0 and s.seq_frames < longest for s in segs),
        "index": index,
        "subjects": subjects,
    }


_write_remote = ray.remote(num_cpus=1, max_retries=3)(write_shard)


def _swap_in(fs, root: str, staging: str, retired: str, datasets: list[str]) -> None:
    """Move the shards of ``datasets`` from ``root`` to ``retired`` and the new ones from ``staging`` to ``root``."""
    for d in datasets:
        if fs.exists(f"{root}/{d}"):
            fs.mv(f"{root}/{d}", f"{retired}/{d}", recursive=True)
        if fs.exists(f"{staging}/{d}"):
            fs.mv(f"{staging}/{d}", f"{root}/{d}", recursive=True)


def build(
    store_url: str,
    out: str | Path,
    *,
    datasets: list[str] | None = None,
    segment_len: int = 1024,
    clip_len: int = 243,
    shard_size: int = 64 << 20,
    dtype: str = "float32",
    count_clip_lens: tuple[int, ...] = DEFAULT_COUNT_CLIP_LENS,
    overwrite: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    storage_options: dict | None = None,
    progress: bool = True,
) -> dict:
    """Build the shards of ``datasets`` (default: every dataset of :data:`shards.DATASETS` in the store)
    under ``out`` and write ``out/manifest.json``; returns the manifest.

    Args:
        store_url: motion store path or fsspec URL (read with :class:`ingest.store.MotionStore` only).
        out: shard folder, a path or fsspec URL (every Ray worker must reach it: a shared file system or
            an object store).
        segment_len: frames per segment; clip_len: the longest window training will use (segments overlap
            by ``clip_len - 1``); both in frames at the store's 50 fps.
        shard_size: target bytes per shard.
        dtype: "float32" or "float16" (see module docstring).
        count_clip_lens: clip lengths whose stride-1 window counts the manifest records (those above
            ``clip_len`` are dropped, ``clip_len`` is always added).
        overwrite: rebuild datasets already in the manifest; the new shards are written beside the old ones
            and replace them, manifest last, only when every shard and the manifest are written (a failed
            build, a shard task or a disk too full for the manifest, keeps the old shards and manifest);
            shards of other datasets are kept when built with the same segment_len, clip_len and dtype.
        address, num_cpus: Ray cluster (see :func:`ingest.job.ensure_ray`).

    Raises:
        ValueError: bad options or no dataset to build. FileExistsError: a dataset already built and not
        ``overwrite``. RuntimeError: a shard task failed (naming the shard).
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    store = MotionStore.open(store_url, storage_options)
    if not store.datasets:
        raise FileNotFoundError(f"--store {store.url}: no motion store there (write one with python -m ingest ...)")
    datasets = list(datasets or [d for d in DATASETS if d in store])
    unknown = [d for d in datasets if d not in DATASETS or d not in store]
    if unknown or not datasets:
        raise ValueError(
            f"datasets {unknown or datasets} not buildable: store {store.url} has {store.datasets}, "
            f"shards knows {DATASETS}"
        )
    out = str(out)
    fs, root = open_root(out)
    lens = tuple(sorted({t for t in count_clip_lens if t <= clip_len} | {clip_len}))
    params = {"segment_len": segment_len, "clip_len": clip_len, "dtype": dtype, "count_clip_lens": list(lens)}
    old = load_manifest(out) if fs.exists(f"{root}/{MANIFEST}") else None
    kept = {}
    if old is not None:
        again = sorted({r["dataset"] for r in old["shards"].values()} & set(datasets))
        if again and not overwrite:
            raise FileExistsError(f"{out}/{MANIFEST} already has shards of {again}; pass overwrite to rebuild")
        kept = {k: r for k, r in old["shards"].items() if r["dataset"] not in datasets}
        if kept and any(old[k] != v for k, v in params.items()):
            raise ValueError(
                f"{out}/{MANIFEST} was built with { ({k: old[k] for k in params}) }, not {params}: "
                f"rebuild every dataset or use another folder"
            )
    plans = [
        p
        for d in datasets
        for p in plan_shards(store, d, segment_len, clip_len, shard_size, 2 if dtype == "float16" else 4)
    ]
    # The new shards are built beside the old ones (a staging folder) and swapped in only once every shard is
    # written; the manifest follows the swap. A failed build leaves the old shards and manifest as they were.
    for leftover in fs.glob(f"{root}/{STAGING_PREFIX}*"):  # of a build that was killed
        fs.rm(leftover, recursive=True)
    stage_name = f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    staging, stage_url = f"{root}/{stage_name}", f"{out.rstrip('/')}/{stage_name}"
    ensure_ray(address, num_cpus)
    pending = {_write_remote.remote(store.url, storage_options, stage_url, p, dtype, lens): p.name for p in plans}
    records = {}
    retired = f"{root}/{STAGING_PREFIX}old-{uuid.uuid4().hex[:8]}"
    try:
        with tqdm(total=len(pending), desc="shards", unit="shard", disable=not progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                name = pending.pop(done[0])
                try:
                    records[name] = ray.get(done[0])
                except Exception as exc:
                    raise RuntimeError(f"shard {out}/{name} failed: {exc}; the old shards are kept") from exc
                bar.update()
        for stray in fs.glob(f"{staging}/*/.*.tmp-*"):  # half shards of attempts killed mid-write (Ray reran them)
            fs.rm(stray)
        shards = dict(sorted({**kept, **records}.items()))
        manifest = {"version": 1, "store": store.url, **params, "shards": shards, "totals": build_totals(shards)}
        # The manifest is written in full before the swap, so a full disk fails with the old shards in place.
        swap = functools.partial(_swap_in, fs, root, staging, retired, datasets)
        write_manifest(out, manifest, before_rename=swap)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        raise
    for leftover in (staging, retired):
        if fs.exists(leftover):
            fs.rm(leftover, recursive=True)
    return manifest
