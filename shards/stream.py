"""The streaming loader: the only way training reads shards (DESIGN.md, "Shards").

:func:`make_loader` returns a :class:`ShardLoader`; iterating it once yields one epoch of batches::

    loader = make_loader("SHARDS", mixture="base", clip_len=243, batch_size=64, num_workers=4, seed=0)
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)
        for batch in loader:          # exactly len(loader) batches on every rank
            ...

Batch contract (a dict of torch tensors; B batch, T ``clip_len``, J 17 or 16 joints in Human3.6M order):

* ``pose2d`` (B, T, J, 3): x, y normalised ``x / w * 2 - [1, h / w]`` (w, h image size in pixels), and the
  2D confidence;
* ``pose3d`` (B, T, J, 3): metres, camera coordinates (x right, y down, z forward), root-relative (joint 0,
  the pelvis, is at the origin);
* ``pose3d_norm`` (B, T, J, 3), only with ``normalize_3d=True``: ``pose3d * f_x / Z_root * 2 / w``, the
  root-relative pose in the 2D normalised units at the pelvis depth (the 2.5D "image frame" scaling of
  MotionBERT / VideoPose3D ``camera_to_image_frame``), so its x, y match ``pose2d``'s scale;
* ``dataset`` (B,) int64: index into :data:`shards.DATASETS`;
* ``valid2d``, ``valid3d`` (B, T) bool: False where the frame has no usable 2D / 3D (e.g. MPI-INF-3DHP
  invalid frames, non-finite input), on frames padded by edge replication (sequences shorter than T), and
  on every frame of a sequence whose mixture share does not grant that modality (``shards.mixtures``:
  an "unlabelled" subject's 3D; the values are zeros then);
* ``paired`` (B,) bool: whether the share grants the window's 2D-3D pairs (2D input, 3D target);
* with ``with_keys=True`` also ``sequence`` (list of B ids), ``start`` (B,) int64 (first frame of the window
  in its sequence) and ``shard`` (list of B shard names).

Pipeline per DataLoader worker (webdataset stages). Reading a shard: opening with fsspec (local paths or
any URL) -> webdataset's tar expansion and grouping by key -> segment decoding and mixture selection.

* Non-resampled (exactly-once epochs): a per-epoch shuffled shard list -> ``split_by_node`` and
  ``split_by_worker`` -> reading -> one shuffle buffer over windows -> batches.
* Resampled (pretraining): one endless sub-stream per dataset, mixed per window, as webdataset's ``RandomMix``
  mixes per-source pipelines (with this module's seeded generator instead of ``RandomMix``'s global
  ``random``). Each window of a batch comes from dataset d with probability ``p_d = windows_d * weight_d /
  sum_e windows_e * weight_e`` (selected windows of the mixture times the optional weight), independently,
  from the first batch on, whatever the shard sizes: a batch of B holds Binomial(B, p_d) windows of d.
  Subject weights (``shards.mixtures``) thin the windows of the lighter subjects at decoding, each kept with
  probability ``Share.rate``, and ``windows_d`` then counts the expected kept windows.
  (Drawing whole shards or segments instead lets one big shard fill the shuffle buffer, and hundreds of steps
  read one dataset only.) A dataset's sub-stream is ``open_shards`` lanes interleaved segment by segment (each
  next segment from a uniformly chosen lane) into the dataset's own shuffle buffer over windows. A lane reads
  whole shards, each drawn uniformly with replacement from the dataset's shards and read from a uniformly
  drawn segment to its end, then from its start up to that segment (reached by walking the tar headers,
  seeking over the data, :func:`seek_sample`). A shard read whole yields each selected window once, so uniform
  draws give every window of the dataset the same rate (draws proportional to shard size would weight a window
  by its shard's size); the random starting segment gives every part of a shard the same rate even when the
  epochs (each starts the stream anew) or the many workers' shares of an epoch are short against a shard; the
  lanes put windows of ``open_shards`` distant places (other shards, or other parts of one big shard) in every
  batch, where one lane gives windows of the ``shuffle_segments`` consecutive segments in the buffer only.

Every random choice comes from a generator seeded by (seed, epoch, rank, worker), so a run is
reproducible for a fixed world size and worker count. ``WebLoader.with_epoch(len(loader))`` makes every
rank yield the same number of batches.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import math
import multiprocessing
import random
import sys
import tarfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import torch
import webdataset as wds
from fsspec.implementations.local import LocalFileSystem
from webdataset.tariterators import group_by_keys, tar_file_expander

from shards import DATASETS
from shards.codec import flip, joint_set, normalize_3d, pad_edge, select_joints
from shards.layout import Segment, window_starts
from shards.manifest import load_manifest, open_root, shard_windows
from shards.mixtures import Share, resolve, selected


def _seed(*parts: int) -> int:
    """A 64-bit seed from integers (numpy SeedSequence entropy mixing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0])


def _mask(n: int, invalid: list[list[int]]) -> np.ndarray:
    valid = np.ones(n, bool)
    for a, b in invalid:
        valid[a:b] = False
    return valid


class _BufferPool:
    """Batch arrays recycled once nothing outside the pool references them (a tensor made by
    ``torch.from_numpy``, and every view of it, holds a reference to its array). Fresh multi-megabyte
    arrays cost a page fault per 4 KiB page; recycling them doubled the loader's throughput on T = 243."""

    def __init__(self, limit: int = 48):
        self.limit = limit
        self.arrays: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        for i in range(len(self.arrays)):
            # 2 references: the pool's list and getrefcount's argument
            if self.arrays[i].shape == shape and self.arrays[i].dtype == dtype and sys.getrefcount(self.arrays[i]) == 2:
                return self.arrays[i]
        array = np.empty(shape, dtype)
        if len(self.arrays) < self.limit:
            self.arrays.append(array)
        return array


@dataclass
class _Decoded:
    """A decoded segment: arrays (n, ...) of the frames and the window offsets it still has to emit."""

    arrays: dict[str, np.ndarray]
    dataset: int
    seq_id: str
    start: int
    shard: str
    offsets: list[int] = field(default_factory=list)
    paired: bool = True


@dataclass
class StreamConfig:
    """Everything a worker needs to build its stream (picklable). See :func:`make_loader`."""

    root: str
    urls: list[str]
    weights: list[float]
    segments: list[int]
    shares: dict[str, Share]
    clip_len: int
    stride: int
    joints: int
    batch_size: int
    seed: int
    resampled: bool
    flip: bool
    dtype: str
    normalize_3d: bool
    shuffle_segments: int
    with_keys: bool
    open_shards: int


class SegmentStream(torch.utils.data.IterableDataset):
    """One epoch of batches of one rank and worker (module docstring); infinite when resampled."""

    def __init__(self, cfg: StreamConfig, epoch: int, corrupt):
        self.cfg = cfg
        self.epoch = epoch
        self.corrupt = corrupt  # multiprocessing.Value("i") shared with the main process
        self._bad_urls: set[str] = set()
        self._pool = _BufferPool()

    def __iter__(self) -> Iterator[dict]:
        cfg = self.cfg
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        self._rng = random.Random(_seed(cfg.seed, self.epoch, rank, worker))
        if cfg.resampled:
            stages = [self._mix]
        else:
            order = list(cfg.urls)
            random.Random(_seed(cfg.seed, self.epoch)).shuffle(order)
            stages = [wds.SimpleShardList(order), wds.split_by_node, wds.split_by_worker, self._read,
                      self._windows]
        return iter(wds.DataPipeline(*stages, self._batches))

    # -- stages ------------------------------------------------------------------------------------
    def _read(self, shards: Iterator[dict], start: int = 0, stop: int | None = None) -> Iterator[_Decoded]:
        """The selected segments of the shards ``{"url"}``, in shard order (webdataset's tar expansion
        and grouping by key, then decoding); of one shard, only its samples ``start:stop`` (the first
        ``start`` skipped by :func:`seek_sample`)."""
        samples = group_by_keys(tar_file_expander(self._open(shards, start), handler=self._skip_corrupt),
                                handler=self._skip_corrupt)
        return self._segments(samples if stop is None else itertools.islice(samples, stop - start))

    def _mix(self) -> Iterator[tuple[_Decoded, int]]:
        """Resampled windows: one stream per dataset (:meth:`_dataset_segments` through the dataset's own
        shuffle buffer), mixed by :meth:`_draw`; a single dataset's stream is returned as it is."""
        cfg, groups = self.cfg, {}
        for k, url in enumerate(cfg.urls):
            groups.setdefault(url_name(cfg.root, url).split("/")[0], []).append(k)
        streams = [self._windows(self._dataset_segments(ks)) for ks in groups.values()]
        if len(streams) == 1:
            return streams[0]
        return self._draw(streams, [sum(cfg.weights[k] for k in ks) for ks in groups.values()])

    def _draw(self, streams: list[Iterator], weights: list[float]) -> Iterator:
        """Per item a stream drawn with probability proportional to its weight (for a dataset: its selected
        windows times its weight, the sum of its shard weights), then that stream's next item; a stream
        that ends (a dataset whose shards all turned out corrupt) drops out."""
        rand = self._rng.random
        while len(streams) > 1:
            cum, last = np.cumsum(weights).tolist(), len(weights) - 1
            while True:
                i = min(bisect.bisect(cum, rand() * cum[-1]), last)  # random.choices' draw, less overhead
                item = next(streams[i], None)
                if item is None:
                    break
                yield item
            del streams[i], weights[i]
        yield from streams[0]

    def _dataset_segments(self, shards: list[int]) -> Iterator[_Decoded]:
        """One dataset's endless segment stream (``shards``: indices into ``cfg.urls``): ``open_shards``
        lanes (:meth:`_lane`) interleaved segment by segment, each next segment from a uniformly chosen
        lane."""
        lanes = [self._lane(shards) for _ in range(self.cfg.open_shards)]
        rand = self._rng.random
        while lanes:
            i = int(rand() * len(lanes))
            seg = next(lanes[i], None)
            if seg is None:
                del lanes[i]
            else:
                yield seg

    def _lane(self, shards: list[int]) -> Iterator[_Decoded]:
        """Whole shards, each drawn uniformly with replacement from ``shards`` (indices into ``cfg.urls``;
        those not found corrupt) and read from a uniformly drawn segment to its end, then from its start
        up to that segment (module docstring: why); endless, or until every shard is corrupt."""
        cfg = self.cfg
        while good := [k for k in shards if cfg.urls[k] not in self._bad_urls]:
            k = good[int(self._rng.random() * len(good))]
            start = int(self._rng.random() * cfg.segments[k])
            yield from self._read(iter([{"url": cfg.urls[k]}]), start=start)
            if start:
                yield from self._read(iter([{"url": cfg.urls[k]}]), stop=start)

    def _open(self, shards: Iterator[dict], start: int = 0) -> Iterator[dict]:
        """Open each shard with fsspec (a path or URL), at its sample ``start``; an unreadable one is
        skipped like a corrupt one."""
        for item in shards:
            stream = None
            try:
                stream = fsspec.open(item["url"], "rb").open()
                if start:
                    seek_sample(stream, start)
            except (OSError, EOFError, tarfile.TarError) as exn:
                if stream is not None:
                    stream.close()
                exn.args = (*exn.args, item["url"])
                self._skip_corrupt(exn)
                continue
            try:
                yield {"url": item["url"], "stream": stream}
            finally:
                stream.close()

    def _skip_corrupt(self, exn: Exception) -> bool:
        url = next((a for a in reversed(exn.args) if isinstance(a, str) and a.endswith(".tar")), "?")
        self._mark_corrupt(url, exn)
        return True

    def _mark_corrupt(self, url: str, exn: Exception) -> None:
        if url in self._bad_urls:
            return
        self._bad_urls.add(url)
        warnings.warn(f"skipping corrupt shard {url}: {type(exn).__name__}: {exn}", stacklevel=2)
        with self.corrupt.get_lock():
            self.corrupt.value += 1

    def _segments(self, samples: Iterator[dict]) -> Iterator[_Decoded]:
        for sample in samples:
            url = sample.get("__url__", "?")
            if url in self._bad_urls:
                continue
            try:
                seg = self._decode(sample)
            except (KeyError, ValueError, OSError, EOFError) as exn:
                self._mark_corrupt(url, exn)
                continue
            if seg is not None and seg.offsets:
                yield seg

    def _decode(self, sample: dict) -> _Decoded | None:
        cfg = self.cfg
        meta = json.loads(sample["meta.json"])
        share = cfg.shares.get(meta["dataset"])
        if not selected(meta["id"], share, meta.get("subject")):
            return None
        granted = share.modalities(meta.get("subject"))
        seg = Segment(meta["start"], meta["stop"], meta["own_end"], meta["seq_frames"])
        offsets = [t - seg.start for t in window_starts(seg, cfg.clip_len, cfg.stride)]
        rate = share.rate(meta.get("subject"))
        if cfg.resampled and rate < 1.0:  # a lighter subject's windows are thinned to its weight
            offsets = [o for o in offsets if self._rng.random() < rate]
        if not offsets:
            return None
        dtype = np.dtype(cfg.dtype)
        p2 = np.load(io.BytesIO(sample["pose2d.npy"])).astype(dtype, copy=False)
        p3 = np.load(io.BytesIO(sample["pose3d.npy"])).astype(dtype, copy=False)
        n = seg.stop - seg.start
        if p2.shape != (n, 17, 3) or p3.shape != (n, 17, 3):
            raise ValueError(f"{sample['__key__']}: pose2d {p2.shape} / pose3d {p3.shape}, expected ({n}, 17, 3)")
        if "2d" not in granted:  # a modality the mixture does not grant is never read (zeros, invalid)
            p2 = np.zeros_like(p2)
        if "3d" not in granted:
            p3 = np.zeros_like(p3)
        arrays = {"pose2d": p2, "pose3d": p3,
                  "valid2d": _mask(n, meta["invalid2d"]) & ("2d" in granted),
                  "valid3d": _mask(n, meta["invalid3d"]) & ("3d" in granted)}
        if cfg.normalize_3d:
            if not meta.get("f"):
                raise RuntimeError(f"{sample.get('__url__')}: sequence {meta['id']} has no focal length 'f' in its "
                                   f"metadata; normalize_3d needs it")
            z = np.load(io.BytesIO(sample["root.npy"]))[:, 2]
            arrays["pose3d_norm"] = normalize_3d(p3, z, meta["f"][0], meta["width"])
        target = joint_set(cfg.joints)
        arrays = {k: select_joints(v, target) if v.ndim == 3 else v for k, v in arrays.items()}
        if n < cfg.clip_len:  # a sequence shorter than a window: edge replication, padded frames invalid
            arrays = {k: pad_edge(v, 0, cfg.clip_len - n) for k, v in arrays.items()}
            arrays["valid2d"][n:] = arrays["valid3d"][n:] = False
        self._rng.shuffle(offsets)
        return _Decoded(arrays, DATASETS.index(meta["dataset"]), meta["id"], seg.start,
                        url_name(cfg.root, sample.get("__url__", "?")), offsets, "pairs" in granted)

    def _windows(self, segments: Iterator[_Decoded]) -> Iterator[tuple[_Decoded, int]]:
        """Shuffle buffer over windows: up to ``shuffle_segments`` decoded segments are open at once and
        each window (segment, offset) is drawn from a uniformly chosen open segment (whose own window order
        is already shuffled); a segment leaves the buffer when its windows are spent."""
        size = max(1, self.cfg.shuffle_segments)
        pool: list[_Decoded] = []
        rand = self._rng.random
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

    def _batches(self, windows: Iterator[tuple[_Decoded, int]]) -> Iterator[dict]:
        """Batches of ``batch_size`` windows; the last batch of a finite stream may be short."""
        batch: list[tuple[_Decoded, int]] = []
        for window in windows:
            batch.append(window)
            if len(batch) == self.cfg.batch_size:
                yield self._collate(batch)
                batch = []
        if batch:
            yield self._collate(batch)

    def _collate(self, batch: list[tuple[_Decoded, int]]) -> dict:
        cfg, T = self.cfg, self.cfg.clip_len
        first = batch[0][0].arrays
        out = {k: self._pool.get((len(batch), T, *v.shape[1:]), v.dtype) for k, v in first.items()}
        keys = list(out)
        targets = [out[k] for k in keys]
        for b, (seg, o) in enumerate(batch):
            arrays, end = seg.arrays, o + T
            for k, target in zip(keys, targets, strict=True):
                target[b] = arrays[k][o:end]
        if cfg.flip:
            flipped = np.array([self._rng.random() < 0.5 for _ in batch])
            target = joint_set(cfg.joints)
            for k in ("pose2d", "pose3d", "pose3d_norm"):
                if k in out:
                    out[k][flipped] = flip(out[k][flipped], target)
        result = {k: torch.from_numpy(v) for k, v in out.items()}
        result["dataset"] = torch.tensor([seg.dataset for seg, _ in batch], dtype=torch.int64)
        result["paired"] = torch.tensor([seg.paired for seg, _ in batch], dtype=torch.bool)
        if cfg.with_keys:
            result["sequence"] = [seg.seq_id for seg, _ in batch]
            result["start"] = torch.tensor([seg.start + o for seg, o in batch], dtype=torch.int64)
            result["shard"] = [seg.shard for seg, _ in batch]
        return result


def seek_sample(stream, index: int) -> None:
    """Move a seekable tar ``stream``, at its start, to the header of its sample ``index`` (counted from
    0; a sample's members share the key, the name up to the first dot, as in webdataset's
    ``base_plus_ext``): :mod:`tarfile` walks the member headers, seeking over their data, so the skipped
    samples cost a header read each, not their bytes. Reading the tar from there, as a stream, yields the
    samples from ``index`` on.

    Raises:
        EOFError: the tar has at most ``index`` samples. tarfile.TarError: a damaged header.
    """
    count, last = 0, None
    for info in tarfile.open(fileobj=stream, mode="r:"):
        key = info.name.split(".", 1)[0]
        if key != last:
            if count == index:
                stream.seek(info.offset)  # for a PAX member, the offset of its extended header
                return
            count, last = count + 1, key
    raise EOFError(f"the tar has {count} samples, none at index {index}")


def url_name(root: str, url: str) -> str:
    """Shard name relative to the shard folder (``h36m/train-000000.tar``) from its URL."""
    return url[len(root) + 1:] if url.startswith(root + "/") else url


class ShardLoader:
    """An epoch-aware loader over shards; build it with :func:`make_loader`.

    Iterating yields exactly ``len(loader)`` batches (the same on every rank) for the current epoch, then
    advances the epoch. ``state_dict()`` / ``load_state_dict()`` carry (seed, epoch, batch): a loader
    restored from a state replays the same epoch order and skips the ``batch`` batches already consumed
    (they are read again and dropped, so resuming late in a long epoch costs that reading time). The
    order is reproducible for the same shards, options, world size and ``num_workers``. ``len(loader)``
    is the batch count of the epoch the next iteration runs.

    Non-resampled, one rank sees every selected window exactly once per epoch. With several ranks each
    sees its own shards once, and a rank whose pass is shorter than ``len(loader)`` continues with its pass
    from the start (padding, like ``torch.utils.data.DistributedSampler``); a pass shortened by a corrupt
    shard is padded the same way.

    Attributes:
        windows: windows of one pass over the selection (all ranks), i.e. the samples of one epoch in the
            non-resampled mode; the data-scaling "number of samples" at this clip length and stride.
        windows_per_dataset: the same per dataset name.
        shards: names of the shards in the selection.
        rank, world_size: this process's place (``RANK`` / ``WORLD_SIZE`` or torch.distributed).
    """

    def __init__(self, cfg: StreamConfig, *, windows: list[int], epoch: int, steps_per_epoch: int | None,
                 num_workers: int, pin_memory: bool, datasets: list[str]):
        self.cfg = cfg
        self.epoch = epoch
        self.batch = 0
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self._steps = steps_per_epoch
        self._shard_windows = windows
        self.windows = sum(windows)
        self.windows_per_dataset = {d: 0 for d in datasets}
        for url, n in zip(cfg.urls, windows, strict=True):
            self.windows_per_dataset[url_name(cfg.root, url).split("/")[0]] += n
        self.shards = [url_name(cfg.root, u) for u in cfg.urls]
        self._corrupt = multiprocessing.Value("i", 0)
        self.rank, self.world_size, _, _ = wds.utils.pytorch_worker_info()
        if not cfg.resampled and len(cfg.urls) < self.world_size:
            raise ValueError(f"{cfg.root}: {len(cfg.urls)} shards selected for {self.world_size} ranks; the "
                             f"non-resampled mode needs one per rank (build with a smaller --shard-size)")

    @property
    def corrupt_shards(self) -> int:
        """Shard reads abandoned because the shard was corrupt (each also raised a warning)."""
        return self._corrupt.value

    def rank_batches(self, epoch: int | None = None) -> list[int]:
        """Batches of one non-resampled pass per rank in ``epoch``: ranks take every world_size-th shard of
        the epoch's shard order and their workers every num_workers-th of those (webdataset's
        ``split_by_node`` / ``split_by_worker``); each worker ends with a partial batch."""
        order = list(range(len(self.cfg.urls)))
        random.Random(_seed(self.cfg.seed, self.epoch if epoch is None else epoch)).shuffle(order)
        workers = max(1, self.num_workers)
        counts = []
        for rank in range(self.world_size):
            mine = order[rank::self.world_size]
            counts.append(sum(math.ceil(sum(self._shard_windows[i] for i in mine[w::workers]) / self.cfg.batch_size)
                              for w in range(workers)))
        return counts

    def __len__(self) -> int:
        """Batches per epoch on every rank: ``steps_per_epoch`` when given; else, resampled, one pass of
        windows spread over all ranks, ceil(windows / (batch_size * world_size)); else the largest rank's
        pass (:meth:`rank_batches`), smaller ranks repeating their pass from the start to match."""
        if self._steps:
            return self._steps
        if self.cfg.resampled:
            return math.ceil(self.windows / (self.cfg.batch_size * self.world_size))
        return max(self.rank_batches())

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (from its first batch) on the next iteration."""
        self.epoch, self.batch = epoch, 0

    def state_dict(self) -> dict:
        """{"seed", "epoch", "batch"}: the stream position (batches already yielded in ``epoch``)."""
        return {"seed": self.cfg.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a position from :meth:`state_dict` (the seed too)."""
        self.cfg.seed, self.epoch, self.batch = int(state["seed"]), int(state["epoch"]), int(state["batch"])

    def __iter__(self) -> Iterator[dict]:
        dataset = SegmentStream(self.cfg, self.epoch, self._corrupt)
        loader = wds.WebLoader(dataset, batch_size=None, num_workers=self.num_workers,
                               pin_memory=self.pin_memory).with_epoch(len(self))
        for i, batch in enumerate(loader):
            if i >= self.batch:
                self.batch = i + 1
                yield batch
        self.epoch, self.batch = self.epoch + 1, 0


def make_loader(shards_dir: str | Path, *, mixture: str | Mapping | None = None,
                datasets: list[str] | tuple[str, ...] | None = None, split: str = "train", clip_len: int | None = None,
                stride: int = 1, joints: int = 17, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                epoch: int = 0, steps_per_epoch: int | None = None, flip: bool = False, resampled: bool = True,
                dtype: str = "float32", normalize_3d: bool = False, shuffle_segments: int = 32,
                with_keys: bool = False, mixtures_file: str | Path | None = None,
                pin_memory: bool = False, open_shards: int = 4) -> ShardLoader:
    """The training data stream over the shards in ``shards_dir`` (batch contract: module docstring).

    Args:
        shards_dir: folder written by ``python -m shards build`` (with ``manifest.json``), a path or any
            fsspec URL.
        mixture: a mixture name (``small``, ``base``, ``large`` or one of ``mixtures_file``) or an inline
            ``{dataset: fraction | {"fraction", "weight"}}``; or give ``datasets`` instead (each taken whole).
            Mixtures are for pretraining and require ``split="train"``.
        split: "train" or "test" shards.
        clip_len: T, frames per window (50 fps); at most (and by default) the clip length the shards were
            built with (``manifest.json``).
        stride: frames between consecutive window starts of a sequence.
        joints: 17 (Human3.6M-17) or 16 (neck/nose dropped; :func:`shards.codec.select_joints`).
        batch_size: windows per batch (the last batch of a worker's pass may be smaller when not resampled).
        num_workers: DataLoader worker processes (0: load in the calling process).
        seed, epoch: the stream's seeds are derived from (seed, epoch, rank, worker).
        steps_per_epoch: batches per epoch on every rank (default: see :meth:`ShardLoader.__len__`).
        flip: mirror each window with probability 1/2: left/right joints swapped
            (``JointSet.flip_permutation``) and x negated in ``pose2d`` (normalised x -> -x), ``pose3d`` and
            ``pose3d_norm`` (camera x -> -x).
        resampled: True (pretraining): an endless stream cut into epochs, each window's dataset drawn with
            probability proportional to the dataset's selected windows times its weight, the shards of a
            dataset drawn uniformly with replacement (module docstring). False (finetuning, tests): every
            selected window exactly once per pass; shards shuffled per epoch, split across ranks
            (``RANK`` / ``WORLD_SIZE`` or torch.distributed) and workers.
        dtype: "float32" or "float16" pose tensors.
        normalize_3d: add ``pose3d_norm``.
        shuffle_segments: segments open in a window shuffle buffer (memory: this many segments per worker,
            and per dataset when resampled, about 0.4 MB each at 1024 frames in float32, 0.6 MB with
            normalize_3d).
        with_keys: add ``sequence``, ``start`` and ``shard`` (which window each row is).
        mixtures_file: JSON file of user-defined mixtures (``shards/mixtures.py``).
        pin_memory: passed to the DataLoader.
        open_shards: resampled only: lanes per dataset and worker, each reading shards of the dataset from
            a random segment, interleaved segment by segment (module docstring).

    Raises:
        FileNotFoundError / ValueError: missing manifest, unknown mixture or dataset, clip_len above the
            shards' clip length, bad options, or no window selected.
    """
    fs, path = open_root(shards_dir)
    root = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    manifest = load_manifest(root)
    if mixture is not None and split != "train":
        raise ValueError(f"mixtures select pretraining data from the train split, not {split!r}: pass datasets")
    clip_len = clip_len or manifest["clip_len"]
    if not 1 <= clip_len <= manifest["clip_len"]:
        raise ValueError(f"clip_len {clip_len} must be in 1..{manifest['clip_len']} (the clip length "
                         f"{root}/manifest.json was built with)")
    if (stride < 1 or batch_size < 1 or num_workers < 0 or open_shards < 1 or joints not in (16, 17)
            or dtype not in ("float32", "float16")):
        raise ValueError(f"bad loader options: stride={stride}, batch_size={batch_size}, num_workers={num_workers}, "
                         f"open_shards={open_shards}, joints={joints} (16 or 17), "
                         f"dtype={dtype!r} (float32 or float16)")
    shares = resolve(mixture, datasets, mixtures_file)
    urls, weights, windows, segments = [], [], [], []
    for name, rec in sorted(manifest["shards"].items()):
        share = shares.get(rec["dataset"])
        if rec["split"] != split or share is None:
            continue
        n = shard_windows(rec, share, clip_len, stride)
        if n:
            urls.append(f"{root}/{name}")
            if resampled and share.subject_weights:  # the expected yield once lighter subjects are thinned
                n_rated = shard_windows(rec, share, clip_len, stride, rated=True)
            else:
                n_rated = n
            weights.append(n_rated * share.weight)
            windows.append(n)
            segments.append(rec["segments"])
    present = {url_name(root, u).split("/")[0] for u in urls}
    for dataset in sorted(set(shares) - present):
        warnings.warn(f"{root}: the selection names {dataset!r} but the shards hold no {split} window of it; "
                      f"streaming without it", stacklevel=2)
    if not urls:
        raise ValueError(f"{root}: no {split} window of {dict(shares)} at clip_len {clip_len}, stride {stride}")
    cfg = StreamConfig(root=root, urls=urls, weights=weights, segments=segments, shares=shares,
                       clip_len=clip_len, stride=stride, joints=joints, batch_size=batch_size, seed=seed,
                       resampled=resampled, flip=flip, dtype=dtype, normalize_3d=normalize_3d,
                       shuffle_segments=shuffle_segments, with_keys=with_keys, open_shards=open_shards)
    return ShardLoader(cfg, windows=windows, epoch=epoch, steps_per_epoch=steps_per_epoch,
                       num_workers=num_workers, pin_memory=pin_memory, datasets=list(shares))
