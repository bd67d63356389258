"""The streaming loader: the only way training reads shards (DESIGN.md, "Shards").

:func:`make_loader` returns a :class:`ShardLoader`; iterating it once yields one epoch of batches::

    loader = make_loader("SHARDS", LoaderOptions(mixture="base", clip_len=243, batch_size=64, num_workers=4))
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
* ``camera`` (B, T, 4) float32, only with ``with_camera=True``: the window's pinhole intrinsics
  ``[f_x, f_y, c_x, c_y]`` in ``pose2d``'s normalised units (:func:`shards.codec.normalize_camera`; c_x
  negated on a mirrored window), and ``root`` (B, T, 3) float32: the pelvis in camera coordinates, metres
  (x negated on a mirrored window; zeros where the 3D is not granted), so that ``pose3d + root`` is the
  absolute pose (MPM's refine stage back-projects the 2D at the true pelvis depth, :mod:`finetune.refine`);
* ``dataset`` (B,) int64: index into :data:`shards.DATASETS`;
* ``valid2d``, ``valid3d`` (B, T) bool: False where the frame has no usable 2D / 3D (e.g. MPI-INF-3DHP
  invalid frames, non-finite input), on frames padded by edge replication (sequences shorter than T), and
  on every frame of a sequence whose mixture share does not grant that modality (``shards.mixtures``:
  an "unlabelled" subject's 3D; the values are zeros then);
* ``paired`` (B,) bool: whether the share grants the window's 2D-3D pairs (2D input, 3D target);
* with ``with_keys=True`` also ``sequence`` (list of B ids), ``start`` (B,) int64 (first frame of the window
  in its sequence) and ``shard`` (list of B shard names).

Per DataLoader worker, :class:`shards.sampling.SegmentStream` reads the shards (the exactly-once pass or the
resampled mixture: how, and why, is that module's docstring), :func:`shards.decode.decode_segment` decodes
each segment, and :mod:`shards.batching` shuffles its windows and collates the batches.

Every random choice comes from a generator seeded by (seed, epoch, rank, worker), so a run is
reproducible for a fixed world size and worker count. ``WebLoader.with_epoch(len(loader))`` makes every
rank yield the same number of batches.
"""

from __future__ import annotations

import math
import multiprocessing
import random
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import webdataset as wds
from fsspec.implementations.local import LocalFileSystem

from shards.manifest import load_manifest, open_root, shard_windows, url_name
from shards.mixtures import Share, resolve
from shards.sampling import SegmentStream, seed_for


@dataclass(frozen=True)
class LoaderOptions:
    """What :func:`make_loader` streams and how: its one argument besides the shards folder.

    Attributes:
        mixture: a mixture name (``small``, ``base``, ``large`` or one of ``mixtures_file``) or an inline
            ``{dataset: fraction | {"fraction", "weight"}}``; or give ``datasets`` instead (each taken whole).
            Mixtures are for pretraining and require ``split="train"``.
        datasets: dataset names, each taken whole (instead of ``mixture``).
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
            ``pose3d_norm`` (camera x -> -x), and ``camera``'s c_x and ``root``'s x with them.
        resampled: True (pretraining): an endless stream cut into epochs, each window's dataset drawn with
            probability proportional to the dataset's selected windows times its weight, the shards of a
            dataset drawn uniformly with replacement (module docstring). False (finetuning, tests): every
            selected window exactly once per pass; shards shuffled per epoch, split across ranks
            (``RANK`` / ``WORLD_SIZE`` or torch.distributed) and workers.
        dtype: "float32" or "float16" pose tensors.
        normalize_3d: add ``pose3d_norm``.
        with_camera: add ``camera`` and ``root`` (batch contract; every selected sequence needs intrinsics
            ``f``, ``c`` in its metadata).
        shuffle_segments: segments open in a window shuffle buffer (memory: this many segments per worker,
            and per dataset when resampled, about 0.4 MB each at 1024 frames in float32, 0.6 MB with
            normalize_3d).
        with_keys: add ``sequence``, ``start`` and ``shard`` (which window each row is).
        mixtures_file: JSON file of user-defined mixtures (``shards/mixtures.py``).
        pin_memory: passed to the DataLoader.
        open_shards: resampled only: lanes per dataset and worker, each reading shards of the dataset from
            a random segment, interleaved segment by segment (module docstring).
        max_corrupt: the fraction of the selected shards that may turn out corrupt (each skipped from the
            damaged sample on, with a warning, and counted: :attr:`ShardLoader.corrupt_per_dataset`) before
            the stream stops with an error; 0 (the default): the first corrupt shard stops it.

    Raises:
        ValueError: a bad option value (all of them named), or a mixture with a split other than train.
    """

    mixture: str | Mapping | None = None
    datasets: tuple[str, ...] | list[str] | None = None
    split: str = "train"
    clip_len: int | None = None
    stride: int = 1
    joints: int = 17
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 0
    epoch: int = 0
    steps_per_epoch: int | None = None
    flip: bool = False
    resampled: bool = True
    dtype: str = "float32"
    normalize_3d: bool = False
    with_camera: bool = False
    shuffle_segments: int = 32
    with_keys: bool = False
    mixtures_file: str | Path | None = None
    pin_memory: bool = False
    open_shards: int = 4
    max_corrupt: float = 0.0

    def __post_init__(self):
        if self.mixture is not None and self.split != "train":
            raise ValueError(
                f"mixtures select pretraining data from the train split, not {self.split!r}: pass datasets"
            )
        if not 0 <= self.max_corrupt <= 1:
            raise ValueError(f"max_corrupt must be a fraction in [0, 1], got {self.max_corrupt}")
        if (
            self.stride < 1
            or self.batch_size < 1
            or self.num_workers < 0
            or self.open_shards < 1
            or self.joints not in (16, 17)
            or self.dtype not in ("float32", "float16")
        ):
            raise ValueError(
                f"bad loader options: stride={self.stride}, batch_size={self.batch_size}, "
                f"num_workers={self.num_workers}, open_shards={self.open_shards}, joints={self.joints} "
                f"(16 or 17), dtype={self.dtype!r} (float32 or float16)"
            )


@dataclass
class StreamConfig:
    """Everything a worker needs to build its stream (picklable): the options (``clip_len`` resolved) and the
    selected shards with their mixture shares. See :func:`make_loader`."""

    options: LoaderOptions
    root: str
    urls: list[str]
    weights: list[float]
    segments: list[int]
    shares: dict[str, Share]


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

    def __init__(self, cfg: StreamConfig, *, windows: list[int], datasets: list[str]):
        self.cfg = cfg
        self.epoch = cfg.options.epoch
        self.batch = 0
        self._shard_windows = windows
        self.windows = sum(windows)
        self.windows_per_dataset = {d: 0 for d in datasets}
        for url, n in zip(cfg.urls, windows, strict=True):
            self.windows_per_dataset[url_name(cfg.root, url).split("/")[0]] += n
        self.shards = [url_name(cfg.root, u) for u in cfg.urls]
        self._corrupt = multiprocessing.Array("b", len(cfg.urls) + 1)  # a flag per shard, then "unnamed"
        self.rank, self.world_size, _, _ = wds.utils.pytorch_worker_info()
        if not cfg.options.resampled and len(cfg.urls) < self.world_size:
            raise ValueError(
                f"{cfg.root}: {len(cfg.urls)} shards selected for {self.world_size} ranks; the "
                f"non-resampled mode needs one per rank (build with a smaller --shard-size)"
            )

    @property
    def corrupt_shards(self) -> int:
        """Shards found corrupt so far (each skipped from the damaged sample on, with a warning), counted
        once however often they are read."""
        return bytes(self._corrupt.get_obj()).count(1)  # one copy of the flags, not a lock per flag

    @property
    def corrupt_per_dataset(self) -> dict[str, int]:
        """:attr:`corrupt_shards` per dataset name (datasets without a corrupt shard left out)."""
        counts: dict[str, int] = {}
        for url, flag in zip(self.cfg.urls, bytes(self._corrupt.get_obj()), strict=False):
            if flag:
                name = url_name(self.cfg.root, url).split("/")[0]
                counts[name] = counts.get(name, 0) + 1
        return counts

    def rank_batches(self, epoch: int | None = None) -> list[int]:
        """Batches of one non-resampled pass per rank in ``epoch``: ranks take every world_size-th shard of
        the epoch's shard order and their workers every num_workers-th of those (webdataset's
        ``split_by_node`` / ``split_by_worker``); each worker ends with a partial batch."""
        order = list(range(len(self.cfg.urls)))
        random.Random(seed_for(self.cfg.options.seed, self.epoch if epoch is None else epoch)).shuffle(order)
        workers, batch = max(1, self.cfg.options.num_workers), self.cfg.options.batch_size
        counts = []
        for rank in range(self.world_size):
            mine = order[rank :: self.world_size]
            counts.append(
                sum(math.ceil(sum(self._shard_windows[i] for i in mine[w::workers]) / batch) for w in range(workers))
            )
        return counts

    def __len__(self) -> int:
        """Batches per epoch on every rank: ``steps_per_epoch`` when given; else, resampled, one pass of
        windows spread over all ranks, ceil(windows / (batch_size * world_size)); else the largest rank's
        pass (:meth:`rank_batches`), smaller ranks repeating their pass from the start to match."""
        opts = self.cfg.options
        if opts.steps_per_epoch:
            return opts.steps_per_epoch
        if opts.resampled:
            return math.ceil(self.windows / (opts.batch_size * self.world_size))
        return max(self.rank_batches())

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (from its first batch) on the next iteration."""
        self.epoch, self.batch = epoch, 0

    def state_dict(self) -> dict:
        """{"seed", "epoch", "batch"}: the stream position (batches already yielded in ``epoch``)."""
        return {"seed": self.cfg.options.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a position from :meth:`state_dict` (the seed too). A position after the last batch of its
        epoch (a checkpoint taken on the epoch's last step, before the iteration moved on) is the start of
        the next epoch."""
        self.cfg.options = replace(self.cfg.options, seed=int(state["seed"]))
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        if self.batch >= len(self):
            self.epoch, self.batch = self.epoch + 1, 0

    def __iter__(self) -> Iterator[dict]:
        dataset = SegmentStream(self.cfg, self.epoch, self._corrupt)
        loader = wds.WebLoader(
            dataset, batch_size=None, num_workers=self.cfg.options.num_workers, pin_memory=self.cfg.options.pin_memory
        ).with_epoch(len(self))
        count = 0
        for i, batch in enumerate(loader):
            self._check_corrupt()
            count = i + 1
            if i >= self.batch:
                self.batch = i + 1
                yield batch
        self._check_corrupt()  # a shard found corrupt after the last batch, or before any (an empty epoch)
        if count < len(self):  # webdataset ends an epoch at a pass that yields nothing: no window left
            raise RuntimeError(
                f"{self.cfg.root}: epoch {self.epoch} ended after {count} of {len(self)} batches, its shards "
                f"holding no window left to read ({self.corrupt_shards} found corrupt): check them with "
                f"python -m shards verify"
            )
        self.epoch, self.batch = self.epoch + 1, 0

    def _check_corrupt(self) -> None:
        """RuntimeError when more than ``max_corrupt`` of the shards were found corrupt."""
        if self.corrupt_shards > self.cfg.options.max_corrupt * len(self.cfg.urls):
            raise RuntimeError(
                f"{self.cfg.root}: {self.corrupt_shards} of {len(self.cfg.urls)} shards corrupt "
                f"({self.corrupt_per_dataset}), more than max_corrupt={self.cfg.options.max_corrupt} of them: "
                f"check them with python -m shards verify"
            )


def make_loader(shards_dir: str | Path, options: LoaderOptions | None = None) -> ShardLoader:
    """The training data stream over the shards in ``shards_dir`` (batch contract: module docstring).

    Args:
        shards_dir: folder written by ``python -m shards build`` (with ``manifest.json``), a path or any
            fsspec URL.
        options: what to stream and how (:class:`LoaderOptions`; default: every option's default, which
            needs ``mixture`` or ``datasets``, so in practice always given).

    Raises:
        FileNotFoundError / ValueError: missing manifest, unknown mixture or dataset, clip_len above the
            shards' clip length, or no window selected.
    """
    opts = options or LoaderOptions()
    fs, path = open_root(shards_dir)
    root = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    manifest = load_manifest(root)
    clip_len = opts.clip_len or manifest["clip_len"]
    if not 1 <= clip_len <= manifest["clip_len"]:
        raise ValueError(
            f"clip_len {clip_len} must be in 1..{manifest['clip_len']} (the clip length "
            f"{root}/manifest.json was built with)"
        )
    opts = replace(opts, clip_len=clip_len)
    split, stride = opts.split, opts.stride
    shares = resolve(opts.mixture, opts.datasets, opts.mixtures_file)
    urls, weights, windows, segments = [], [], [], []
    for name, rec in sorted(manifest["shards"].items()):
        share = shares.get(rec["dataset"])
        if rec["split"] != split or share is None:
            continue
        n = shard_windows(rec, share, clip_len, stride)
        if n:
            urls.append(f"{root}/{name}")
            if opts.resampled and share.subject_weights:  # the expected yield once lighter subjects are thinned
                n_rated = shard_windows(rec, share, clip_len, stride, rated=True)
            else:
                n_rated = n
            weights.append(n_rated * share.weight)
            windows.append(n)
            segments.append(rec["segments"])
    present = {url_name(root, u).split("/")[0] for u in urls}
    for dataset in sorted(set(shares) - present):
        warnings.warn(
            f"{root}: the selection names {dataset!r} but the shards hold no {split} window of it; "
            f"streaming without it",
            stacklevel=2,
        )
    if not urls:
        raise ValueError(f"{root}: no {split} window of {dict(shares)} at clip_len {clip_len}, stride {stride}")
    cfg = StreamConfig(options=opts, root=root, urls=urls, weights=weights, segments=segments, shares=shares)
    return ShardLoader(cfg, windows=windows, datasets=list(shares))
