"""How a worker reads the shards: the exactly-once pass and the resampled mixture (:mod:`shards.stream`).

Reading a shard: opening with fsspec (local paths or any URL) -> webdataset's tar expansion and grouping by
key -> decoding and mixture selection (:mod:`shards.decode`) -> the window shuffle buffer and batches
(:mod:`shards.batching`).

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

Every random choice comes from a generator seeded by (seed, epoch, rank, worker) (:func:`seed_for`), so a run
is reproducible for a fixed world size and worker count.
"""

from __future__ import annotations

import bisect
import itertools
import random
import tarfile
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import fsspec
import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from shards.batching import BufferPool, batches, shuffle_windows
from shards.decode import Decoded, decode_segment
from shards.manifest import url_name

if TYPE_CHECKING:
    from shards.stream import StreamConfig


def seed_for(*parts: int) -> int:
    """A 64-bit seed from integers (numpy SeedSequence entropy mixing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0])


class SegmentStream(torch.utils.data.IterableDataset):
    """One epoch of batches of one rank and worker (module docstring); infinite when resampled."""

    def __init__(self, cfg: StreamConfig, epoch: int, corrupt):
        self.cfg = cfg
        self.epoch = epoch
        self.corrupt = corrupt  # multiprocessing.Array("b"): a flag per shard of cfg.urls, shared with the main process
        self._bad_urls: set[str] = set()
        self._open_urls: dict[str, str] = {}  # repr of an open shard stream -> its url (see _skip_corrupt)
        self._pool = BufferPool()

    def __iter__(self) -> Iterator[dict]:
        cfg = self.cfg
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        self._rng = random.Random(seed_for(cfg.options.seed, self.epoch, rank, worker))
        if cfg.options.resampled:
            stages = [self._mix]
        else:
            order = list(cfg.urls)
            random.Random(seed_for(cfg.options.seed, self.epoch)).shuffle(order)
            stages = [wds.SimpleShardList(order), wds.split_by_node, wds.split_by_worker, self._read, self._windows]
        return iter(wds.DataPipeline(*stages, lambda windows: batches(windows, cfg, self._rng, self._pool)))

    # -- stages ------------------------------------------------------------------------------------
    def _read(self, shards: Iterator[dict], start: int = 0, stop: int | None = None) -> Iterator[Decoded]:
        """The selected segments of the shards ``{"url"}``, in shard order (webdataset's tar expansion
        and grouping by key, then decoding); of one shard, only its samples ``start:stop`` (the first
        ``start`` skipped by :func:`seek_sample`)."""
        samples = group_by_keys(
            tar_file_expander(self._open(shards, start), handler=self._skip_corrupt), handler=self._skip_corrupt
        )
        return self._segments(samples if stop is None else itertools.islice(samples, stop - start))

    def _mix(self) -> Iterator[tuple[Decoded, int]]:
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

    def _dataset_segments(self, shards: list[int]) -> Iterator[Decoded]:
        """One dataset's endless segment stream (``shards``: indices into ``cfg.urls``): ``open_shards``
        lanes (:meth:`_lane`) interleaved segment by segment, each next segment from a uniformly chosen
        lane."""
        lanes = [self._lane(shards) for _ in range(self.cfg.options.open_shards)]
        rand = self._rng.random
        while lanes:
            i = int(rand() * len(lanes))
            seg = next(lanes[i], None)
            if seg is None:
                del lanes[i]
            else:
                yield seg

    def _lane(self, shards: list[int]) -> Iterator[Decoded]:
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
            self._open_urls[repr(stream)] = item["url"]
            try:
                yield {"url": item["url"], "stream": stream}
            finally:
                stream.close()
                self._open_urls.pop(repr(stream), None)

    def _skip_corrupt(self, exn: Exception) -> bool:
        url = next((a for a in reversed(exn.args) if isinstance(a, str) and a.endswith(".tar")), None)
        if url is None:  # a damaged member: webdataset names its stream only, "MESSAGE @ <stream's repr>"
            text = " ".join(map(str, exn.args))
            url = next((u for stream, u in self._open_urls.items() if stream in text), "?")
        self._mark_corrupt(url, exn)
        return True

    def _mark_corrupt(self, url: str, exn: Exception) -> None:
        if url in self._bad_urls:
            return
        self._bad_urls.add(url)
        warnings.warn(f"skipping corrupt shard {url}: {type(exn).__name__}: {exn}", stacklevel=2)
        k = self.cfg.urls.index(url) if url in self.cfg.urls else len(self.cfg.urls)  # last slot: unnamed
        with self.corrupt.get_lock():
            self.corrupt[k] = 1

    def _segments(self, samples: Iterator[dict]) -> Iterator[Decoded]:
        for sample in samples:
            url = sample.get("__url__", "?")
            if url in self._bad_urls:
                continue
            try:
                seg = decode_segment(sample, self.cfg, self._rng)
            except (KeyError, ValueError, OSError, EOFError) as exn:
                self._mark_corrupt(url, exn)
                continue
            if seg is not None and seg.offsets:
                yield seg

    def _windows(self, segments: Iterator[Decoded]) -> Iterator[tuple[Decoded, int]]:
        return shuffle_windows(segments, self.cfg.options.shuffle_segments, self._rng)


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
