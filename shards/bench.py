"""``python -m shards.bench``: windows per second per core through the streaming loader against two
per-clip baselines on the same data, in the same run; prints one JSON line.

Data: the Human3.6M train split of a motion store: ``--store`` if given, else Human3.6M ingested from
``$POSEMILL_REAL_DATA/h36m`` when that variable is set (the real files), else from the generated samples
(``ingest.samples``). Shards are built with the defaults (segments of 1024 frames, clip length 243,
float32) in a temporary folder.

Measured, each on windows of T = 243 frames (H36M-17 joints):

* ``loader``: :func:`shards.stream.make_loader` (stride 1, resampled, normalised 2D and ``normalize_3d``,
  batches of 64, float32 tensors, in-process, no worker); ``loader_float16_windows_per_s`` is the same with
  float16 tensors;
* ``pickle``: MotionBERT's layout and access pattern, one pickle per clip holding ``data_input``
  (normalised 2D + confidence) and ``data_label`` (3D), each (243, 17, 3) float32, read by a map-style
  dataset as in MotionBERT's ``MotionDataset3D`` through a shuffling DataLoader (in-process);
* ``wds_clip``: one ``.npy`` pair per clip in webdataset tars, read with webdataset's ``decode`` and
  batched.

"Per core" is windows per second of CPU time of the benchmarking process (user + system), so other
load on the machine does not count; wall-clock rates are reported as well (``wall_windows_per_s``), and
again after evicting each method's files from the page cache (``cold_wall_windows_per_s``: the reads come
from the disk, as they would for a corpus larger than memory). ``bytes_per_window`` is the bytes on disk
per stride-1 window for the shards, and per clip for the baselines (which store one clip per window).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from ingest.h36m import H36MReader
from ingest.job import run_ingest
from ingest.samples import write_samples
from ingest.store import MotionStore
from ingest.untrusted import load_pickle
from shards.stream import LoaderOptions, make_loader
from shards.writer import build

CLIP, BATCH = 243, 64


def _timed(fn) -> tuple[int, float, float]:
    """(windows, cpu seconds, wall seconds) of ``fn()``, which returns the windows it produced."""
    cpu, wall = time.process_time(), time.perf_counter()
    n = fn()
    return n, time.process_time() - cpu, time.perf_counter() - wall


def _clips(store_url: str, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` random 243-frame train clips (normalised 2D + conf, root-relative 3D) from the store."""
    view = MotionStore.open(store_url)["h36m"]
    seqs = [view[m["id"]] for m in view.metas if m["split"] == "train" and view[m["id"]].pose3d.shape[0] >= CLIP]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        seq = seqs[rng.integers(len(seqs))]
        t = int(rng.integers(len(seq) - CLIP + 1))
        w, h = seq.meta["width"], seq.meta["height"]
        p2 = seq.pose2d[t : t + CLIP].copy()
        p2[..., :2] = p2[..., :2] / w * 2 - np.array([1, h / w], np.float32)
        p3 = seq.pose3d[t : t + CLIP] - seq.pose3d[t : t + CLIP, :1]
        out.append((p2.astype(np.float32), p3.astype(np.float32)))
    return out


class PickleClips(torch.utils.data.Dataset):
    """MotionBERT's access pattern (``lib/data/dataset_motion_3d.py``, ``MotionDataset3D``): one pickle per
    clip, read in ``__getitem__`` and returned as ``torch.FloatTensor`` (2D input, 3D label)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # MotionBERT's reader is pickle.load; the data-only unpickler reads the same files without running code
        clip = load_pickle(self.paths[index])
        return torch.FloatTensor(clip["data_input"]), torch.FloatTensor(clip["data_label"])


def evict(paths: list[Path]) -> None:
    """Drop these files from the page cache (fsync, then ``posix_fadvise(DONTNEED)``), so that the next
    read comes from the disk; other files and processes are not affected."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def prepare_pickle(clips, folder: Path) -> tuple[Callable[[], int], list[Path], float]:
    """Write one pickle per clip; returns (a run reading them all in shuffled batches through a
    DataLoader, in-process, returning the clip count; the files; bytes per clip)."""
    folder.mkdir()
    paths = []
    for i, (p2, p3) in enumerate(clips):
        paths.append(folder / f"{i:08d}.pkl")
        with open(paths[-1], "wb") as fh:
            pickle.dump({"data_input": p2, "data_label": p3}, fh)
    loader = torch.utils.data.DataLoader(PickleClips(paths), batch_size=BATCH, shuffle=True)

    def run():
        return sum(len(inputs) for inputs, _ in loader)

    return run, paths, sum(p.stat().st_size for p in paths) / len(paths)


def prepare_wds_clip(clips, folder: Path, per_tar: int = 1000) -> tuple[Callable[[], int], list[Path], float]:
    """Write clips as .npy pairs in webdataset tars; returns (a run streaming them into batches with
    webdataset's decode, returning the clip count; the files; bytes per clip)."""
    folder.mkdir()
    paths = []
    for s in range(0, len(clips), per_tar):
        paths.append(folder / f"clips-{s // per_tar:06d}.tar")
        with wds.TarWriter(str(paths[-1])) as sink:
            for i, (p2, p3) in enumerate(clips[s : s + per_tar], start=s):
                sink.write({"__key__": f"{i:08d}", "input.npy": p2, "label.npy": p3})

    def run():
        pipeline = wds.DataPipeline(
            wds.SimpleShardList([str(p) for p in paths]),
            wds.tarfile_to_samples(),
            wds.decode(),
            wds.to_tuple("input.npy", "label.npy"),
            wds.batched(BATCH),
        )
        return sum(len(batch[0]) for batch in pipeline)

    return run, paths, sum(p.stat().st_size for p in paths) / len(clips)


def prepare_loader(shards: Path, windows: int, dtype: str = "float32") -> tuple[Callable[[], int], list[Path], float]:
    """Returns (a run streaming about ``windows`` windows through the full loader, returning the count; the
    shard files; bytes on disk per stride-1 train window)."""
    loader = make_loader(
        shards,
        LoaderOptions(
            datasets=["h36m"],
            clip_len=CLIP,
            stride=1,
            batch_size=BATCH,
            normalize_3d=True,
            steps_per_epoch=windows // BATCH,
            seed=0,
            dtype=dtype,
        ),
    )

    def run():
        loader.set_epoch(0)
        return sum(len(batch["dataset"]) for batch in loader)

    train = json.loads((shards / "manifest.json").read_text())["totals"]["h36m"]["train"]
    return run, sorted(shards.glob("h36m/*.tar")), train["bytes"] / train["windows"][str(CLIP)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shards.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="motion store with Human3.6M (default: ingest real data or samples)")
    parser.add_argument("--clips", type=int, default=4000, help="clips per baseline")
    parser.add_argument("--windows", type=int, default=128_000, help="windows through the loader")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shards-bench-") as tmp:
        tmp = Path(tmp)
        real = os.environ.get("POSEMILL_REAL_DATA")
        if args.store:
            store, data = args.store, args.store
        else:
            store = str(tmp / "store")
            if real and (Path(real) / "h36m").is_dir():
                src, data = Path(real) / "h36m", f"real Human3.6M ({Path(real) / 'h36m'})"
            else:
                write_samples(tmp / "samples", ["h36m"])
                src, data = tmp / "samples" / "h36m", "generated samples (ingest.samples)"
            run_ingest(H36MReader(), src, store, progress=False)
        build(store, tmp / "shards", datasets=["h36m"], progress=False)
        clips = _clips(store, args.clips)
        prepared = {
            "loader": prepare_loader(tmp / "shards", args.windows),
            "loader_float16": prepare_loader(tmp / "shards", args.windows, "float16"),
            "pickle": prepare_pickle(clips, tmp / "pickle"),
            "wds_clip": prepare_wds_clip(clips, tmp / "wds_clip"),
        }
        warm = {name: _timed(run) for name, (run, _, _) in prepared.items()}
        cold = {}
        for name in ("loader", "pickle", "wds_clip"):
            run, files, _ = prepared[name]
            evict(files)
            cold[name] = _timed(run)
    rate = {name: n / cpu for name, (n, cpu, _) in warm.items()}
    cold_wall = {name: n / wall for name, (n, _, wall) in cold.items()}
    print(
        json.dumps(
            {
                "loader_windows_per_s": round(rate["loader"]),
                "pickle_windows_per_s": round(rate["pickle"]),
                "wds_clip_windows_per_s": round(rate["wds_clip"]),
                "ratio_vs_pickle": round(rate["loader"] / rate["pickle"], 2),
                "ratio_vs_wds_clip": round(rate["loader"] / rate["wds_clip"], 2),
                "bytes_per_window": {k: round(prepared[k][2], 1) for k in ("loader", "pickle", "wds_clip")},
                "loader_float16_windows_per_s": round(rate["loader_float16"]),
                "wall_windows_per_s": {k: round(n / wall) for k, (n, _, wall) in warm.items()},
                "cold_wall_windows_per_s": {k: round(v) for k, v in cold_wall.items()},
                "cold_wall_ratio_vs_pickle": round(cold_wall["loader"] / cold_wall["pickle"], 2),
                "windows_measured": {k: n for k, (n, _, _) in warm.items()},
                "clip_len": CLIP,
                "stride": 1,
                "batch_size": BATCH,
                "data": data,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
