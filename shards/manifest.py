"""``SHARDS/manifest.json``: what every shard holds, totals per dataset, exact window counts, verification.

Manifest layout::

    {"version": 1, "store": url, "segment_len": L, "clip_len": C, "dtype": "float32" | "float16",
     "count_clip_lens": [27, 81, 243],
     "shards": {"<dataset>/<split>-000000.tar": {"name", "dataset", "split", "sha256", "bytes", "segments",
                "frames", "windows": {"243": n, ...} (stride 1), "float32_fallback", "short",
                "index": [[sequence id, start, stop, own_end, seq_frames], ...]}, ...},
     "totals": {"<dataset>": {"<split>": {"shards", "sequences", "segments", "frames", "bytes",
                "windows", "short", "float32_fallback"}}}}

The per-segment ``index`` makes the window count of any mixture, clip length and stride exact
(:func:`shard_windows`): it is the number of windows the loader yields in one non-resampled epoch.
The shard folder is a local path or any fsspec URL (``s3://bucket/shards``; credentials the usual way for
that back end).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

import fsspec
import numpy as np

from ingest.atomic import atomic_path
from shards.layout import Segment, count_windows
from shards.mixtures import Share, selected

MANIFEST = "manifest.json"


def open_root(shards_dir: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol and trailing slash) of a shard folder path or URL."""
    fs, path = fsspec.core.url_to_fs(str(shards_dir))
    return fs, path.rstrip("/")


def load_manifest(shards_dir: str | Path) -> dict:
    """Read ``shards_dir/manifest.json``.

    Raises:
        FileNotFoundError / ValueError: naming the file when it is missing or not a shard manifest.
    """
    fs, root = open_root(shards_dir)
    path = f"{root}/{MANIFEST}"
    if not fs.isfile(path):
        raise FileNotFoundError(f"{shards_dir}/{MANIFEST}: no shard manifest (run `python -m shards build` first)")
    try:
        with fs.open(path, "rb") as fh:
            manifest = json.loads(fh.read().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{shards_dir}/{MANIFEST}: not a shard manifest, unreadable JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{shards_dir}/{MANIFEST}: not a shard manifest, a JSON {type(manifest).__name__}")
    missing = [k for k in ("version", "segment_len", "clip_len", "shards", "totals") if k not in manifest]
    if missing:
        raise ValueError(f"{shards_dir}/{MANIFEST}: not a shard manifest, lacks keys {missing}")
    _check_records(f"{shards_dir}/{MANIFEST}", manifest)
    return manifest


def _check_records(where: str, manifest: dict) -> None:
    """ValueError naming ``where`` and the entry when a field the readers use has the wrong type or a shard's
    name does not start with its dataset (a damaged manifest)."""
    for key in ("segment_len", "clip_len"):
        if type(manifest[key]) is not int:
            raise ValueError(f"{where}: {key} is {manifest[key]!r}, not a whole number")
    if not isinstance(manifest["shards"], dict) or not isinstance(manifest["totals"], dict):
        raise ValueError(f"{where}: 'shards' and 'totals' must be mappings")
    for name, rec in manifest["shards"].items():
        ok = (
            isinstance(rec, dict)
            and all(isinstance(rec.get(k), str) for k in ("dataset", "split"))
            and name.startswith(f"{rec['dataset']}/")
            and type(rec.get("segments")) is int
            and isinstance(rec.get("windows"), dict)
            and isinstance(rec.get("index"), list)
            and all(
                isinstance(row, list) and len(row) == 5 and all(type(v) is int for v in row[1:]) for row in rec["index"]
            )
        )
        if not ok:
            raise ValueError(f"{where}: shard {name!r} has a damaged record")


def write_manifest(shards_dir: str | Path, manifest: dict, before_rename: Callable[[], None] | None = None) -> None:
    """Write the manifest atomically (temporary name, then rename).

    Args:
        before_rename: called once the manifest is written in full under its temporary name, before the
            rename: the build swaps its new shards in there, so a disk too full for the manifest fails
            before any shard is replaced.
    """
    fs, root = open_root(shards_dir)
    with atomic_path(f"{root}/{MANIFEST}", fs) as tmp:
        with fs.open(tmp, "w") as fh:
            fh.write(json.dumps(manifest, indent=1))
        if before_rename is not None:
            before_rename()


def file_sha256(fs: fsspec.AbstractFileSystem, path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def build_totals(shards: Mapping[str, dict]) -> dict:
    """Totals per dataset and split from the shard records."""
    totals: dict[str, dict[str, dict]] = {}
    seen: dict[tuple[str, str], set] = {}
    for rec in shards.values():
        t = totals.setdefault(rec["dataset"], {}).setdefault(
            rec["split"],
            {
                "shards": 0,
                "sequences": 0,
                "segments": 0,
                "frames": 0,
                "bytes": 0,
                "windows": {},
                "short": 0,
                "float32_fallback": 0,
            },
        )
        t["shards"] += 1
        for key in ("segments", "frames", "bytes", "short", "float32_fallback"):
            t[key] += rec[key]
        for clip, n in rec["windows"].items():
            t["windows"][clip] = t["windows"].get(clip, 0) + n
        ids = seen.setdefault((rec["dataset"], rec["split"]), set())
        ids.update(row[0] for row in rec["index"])
        t["sequences"] = len(ids)
    return totals


def shard_windows(record: dict, share: Share | None, clip_len: int, stride: int = 1, rated: bool = False) -> float:
    """Windows of ``clip_len`` frames at ``stride`` that the loader yields from one shard, counting only
    the sequences selected by ``share`` (None: none; a share by subject reads the record's ``subjects``);
    with ``rated``, each subject's windows times :meth:`~shards.mixtures.Share.rate` (the expected yield of
    one resampled pass)."""
    subjects = record.get("subjects", {})
    return sum(
        count_windows(Segment(*row[1:]), clip_len, stride) * (share.rate(subjects.get(row[0])) if rated else 1)
        for row in record["index"]
        if selected(row[0], share, subjects.get(row[0]))
    )


def mixture_windows(
    manifest: dict, shares: Mapping[str, Share], split: str = "train", clip_len: int | None = None, stride: int = 1
) -> dict[str, int]:
    """Windows per dataset of a mixture (``shards.mixtures.resolve``) in ``split``; ``clip_len`` defaults
    to the manifest's."""
    clip_len = clip_len or manifest["clip_len"]
    out = {d: 0 for d in shares}
    for rec in manifest["shards"].values():
        if rec["split"] == split and rec["dataset"] in shares:
            out[rec["dataset"]] += shard_windows(rec, shares[rec["dataset"]], clip_len, stride)
    return out


def _recount(fs: fsspec.AbstractFileSystem, path: str, clip_lens: list[int]) -> dict:
    """Segments, frames, stride-1 windows, index and subjects of a shard, read back from its tar."""
    index, frames, subjects = [], 0, {}
    with fs.open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
        for member in tar:
            if member.name.endswith(".meta.json"):
                meta = json.load(tar.extractfile(member))
                index.append([meta["id"], meta["start"], meta["stop"], meta["own_end"], meta["seq_frames"]])
                subjects[meta["id"]] = str(meta["subject"])
            elif member.name.endswith(".pose2d.npy"):
                frames += len(np.load(io.BytesIO(tar.extractfile(member).read())))
    segs = [Segment(*row[1:]) for row in index]
    return {
        "segments": len(index),
        "frames": frames,
        "index": index,
        "subjects": subjects,
        "windows": {str(t): sum(count_windows(s, t) for s in segs) for t in clip_lens},
    }


def verify(shards_dir: str | Path) -> list[str]:
    """Recheck every shard of the manifest: presence, byte size, sha256, then segment, frame and window
    counts read back from the tar; also report tars the manifest does not list.

    Returns:
        one line per problem, each naming the shard (empty: all shards match).
    """
    manifest = load_manifest(shards_dir)
    fs, root = open_root(shards_dir)
    problems = []
    for name, rec in manifest["shards"].items():
        path = f"{root}/{name}"
        if not fs.isfile(path):
            problems.append(f"{name}: missing")
            continue
        size = fs.size(path)
        if size != rec["bytes"]:
            problems.append(f"{name}: {size} bytes, manifest says {rec['bytes']}")
        digest = file_sha256(fs, path)
        if digest != rec["sha256"]:
            problems.append(f"{name}: sha256 {digest} differs from the manifest's {rec['sha256']}")
            continue
        try:
            counts = _recount(fs, path, manifest["count_clip_lens"])
        except (tarfile.TarError, ValueError, KeyError, OSError) as exc:
            problems.append(f"{name}: unreadable ({type(exc).__name__}: {exc})")
            continue
        for key, value in counts.items():
            if key in rec and value != rec[key]:
                problems.append(f"{name}: {key} differs from the manifest")
    listed = set(manifest["shards"])
    found = sorted(p[len(root) + 1 :] for p in fs.glob(f"{root}/*/*.tar"))
    problems += [f"{name}: not in the manifest" for name in found if name not in listed]
    return problems


def format_table(manifest: dict) -> str:
    """The manifest's totals as a text table, one row per dataset and split."""
    lens = [str(t) for t in manifest["count_clip_lens"]]
    head = [
        "dataset",
        "split",
        "shards",
        "sequences",
        "segments",
        "frames",
        "MB",
        *[f"win@{t}" for t in lens],
        "short",
        "f32fb",
    ]
    rows = [head]
    for dataset, splits in sorted(manifest["totals"].items()):
        for split, t in sorted(splits.items()):
            rows.append(
                [
                    dataset,
                    split,
                    t["shards"],
                    t["sequences"],
                    t["segments"],
                    t["frames"],
                    f"{t['bytes'] / 1e6:.1f}",
                    *[t["windows"].get(c, 0) for c in lens],
                    t["short"],
                    t["float32_fallback"],
                ]
            )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def url_name(root: str, url: str) -> str:
    """Shard name relative to the shard folder (``h36m/train-000000.tar``) from its URL."""
    return url[len(root) + 1 :] if url.startswith(root + "/") else url
