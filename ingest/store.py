"""The motion store: converted datasets as zarr v3 groups, on local disk or any fsspec URL.

Layout (DESIGN.md, "The motion store")::

    STORE/<dataset>/parts/<part>/      one zarr group per ingest task (one source file)
        pose3d   (N, J, 3) float32     metres, camera coordinates (x right, y down, z forward), absolute
        pose2d   (N, J, 3) float32     pixels x, y and a confidence
        offsets  (S + 1,) int64        sequence s is frames offsets[s]:offsets[s + 1]
        <extra>  (N, ...)              optional per-frame arrays shared by all sequences of the part,
                                       e.g. ``valid`` (bool) and ``activity`` (int) for MPI-INF-3DHP
        attrs: {"sequences": [meta, ...], "source": ..., "checksum": ..., ...}
    STORE/<dataset>/tmp/               parts being written; never read, removed by the next writer
    STORE/<dataset>/index.json         every part's sequence metadata, rebuilt after each ingest run
    STORE/<dataset>/errors.jsonl       the files the last ingest run could not convert, with the reason

A part is written under ``tmp/`` and moved to ``parts/`` when complete, so a part that exists is whole
and an interrupted write is never read. Joint order is Human3.6M-17 (``ingest.skeleton.H36M17``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec
import numpy as np
import zarr

from ingest.atomic import naming_target, write_text

# Every chunk of a part is stored, all-zero ones too (zarr skips those by default and reads them back as the
# fill value), so a chunk file that is missing on read is damage, never zeros (DatasetView._checked).
EVERY_CHUNK = {"write_empty_chunks": True}

REQUIRED_META = ("id", "subject", "action", "camera", "split", "fps", "width", "height", "source")
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str) -> str:
    """A part name or sequence id from free text: runs of characters other than letters, digits, ``_``
    and ``-`` become ``_`` (no dots, spaces or slashes, so names survive as webdataset keys)."""
    return _SAFE.sub("_", text).strip("_")


@dataclass
class Sequence:
    """One sequence: one subject, one take, one real or virtual camera.

    Attributes:
        meta: JSON-ready metadata; at least the keys of :data:`REQUIRED_META`, plus the camera's
            intrinsics (``f``, ``c``, ``k``, ``p``) where known.
        pose3d: (N, 17, 3) float32, metres, camera coordinates, absolute.
        pose2d: (N, 17, 3) float32, pixels x, y and confidence (1.0 for projected ground truth).
        frames: optional extra per-frame arrays, each (N, ...), e.g. ``valid`` (N,) bool.
    """

    meta: dict
    pose3d: np.ndarray
    pose2d: np.ndarray
    frames: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pose3d)

    def validate(self) -> None:
        """Raise ValueError naming the sequence and the problem if shapes, dtypes or metadata are wrong."""
        sid = self.meta.get("id", "<no id>")
        missing = [k for k in REQUIRED_META if k not in self.meta]
        if missing:
            raise ValueError(f"sequence {sid}: metadata lacks {missing}")
        if safe_name(str(self.meta["id"])) != self.meta["id"]:
            raise ValueError(f"sequence {sid}: id must contain only letters, digits, '_' and '-'")
        n = len(self.pose3d)
        for key, arr in (("pose3d", self.pose3d), ("pose2d", self.pose2d)):
            if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 3:
                raise ValueError(f"sequence {sid}: {key} has shape {arr.shape}, expected ({n}, J, 3)")
        if self.pose2d.shape[1] != self.pose3d.shape[1]:
            raise ValueError(f"sequence {sid}: pose2d has {self.pose2d.shape[1]} joints, pose3d {self.pose3d.shape[1]}")
        for key, arr in self.frames.items():
            if len(arr) != n:
                raise ValueError(f"sequence {sid}: frame array {key!r} has {len(arr)} rows, expected {n}")


class MotionStore:
    """A motion store rooted at a local path or fsspec URL (``memory://x``, ``s3://bucket/store``, ...).

    ``store[name]`` gives a :class:`DatasetView`; writers use :meth:`write_part`.
    """

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = str(url).rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    @classmethod
    def open(cls, url: str, storage_options: dict | None = None) -> MotionStore:
        """Open (or create on first write) the store at ``url``."""
        return cls(url, storage_options)

    # -- paths ---------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _url(self, path: str) -> str:
        """zarr store argument for an fs path: the plain path locally, a URL otherwise."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    def errors_path(self, dataset: str) -> str:
        return self._path(dataset, "errors.jsonl")

    @property
    def datasets(self) -> list[str]:
        """Names of the datasets that have at least one part."""
        if not self.fs.exists(self.root):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        return sorted(n for n in names if self.fs.exists(self._path(n, "parts")))

    def __getitem__(self, dataset: str) -> DatasetView:
        if not self.fs.exists(self._path(dataset, "parts")):
            raise KeyError(f"dataset {dataset!r} not in motion store {self.url} (has {self.datasets})")
        return DatasetView(self, dataset)

    def __contains__(self, dataset: str) -> bool:
        return self.fs.exists(self._path(dataset, "parts"))

    # -- writing -------------------------------------------------------------------------------------
    def part_names(self, dataset: str) -> list[str]:
        """Complete parts of ``dataset``, sorted."""
        base = self._path(dataset, "parts")
        if not self.fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))

    def has_part(self, dataset: str, part: str) -> bool:
        return self.fs.exists(self._path(dataset, "parts", part, "zarr.json"))

    def write_part(
        self, dataset: str, part: str, sequences: list[Sequence], attrs: dict | None = None, overwrite: bool = False
    ) -> int:
        """Write ``sequences`` as one part, atomically (temporary name, then rename). A write that fails
        removes its temporary part; one for lack of room (full disk) raises an OSError naming the part.

        Args:
            dataset: store dataset name (``h36m``, ``mpi_inf_3dhp``, ``amass``).
            part: part name (``safe_name`` of the source's relative path).
            sequences: validated with :meth:`Sequence.validate`; all must carry the same extra frame keys.
                An empty list writes an empty part (the source was read and held nothing to keep).
            attrs: extra part attributes (source path, checksum, ...).
            overwrite: replace an existing part; otherwise an existing part raises FileExistsError.

        Returns:
            total frames written.
        """
        if safe_name(part) != part:
            raise ValueError(f"part name {part!r} must contain only letters, digits, '_' and '-'")
        final = self._path(dataset, "parts", part)
        if self.has_part(dataset, part) and not overwrite:
            raise FileExistsError(f"part {final} exists; pass overwrite=True to replace it")
        for seq in sequences:
            seq.validate()
        keys = {frozenset(s.frames) for s in sequences}
        if len(keys) > 1:
            raise ValueError(f"part {part}: sequences carry different frame arrays {sorted(map(sorted, keys))}")
        extra = sorted(next(iter(keys))) if keys else []
        tmp = self._path(dataset, "tmp", f"{part}.{uuid.uuid4().hex[:8]}")
        try:
            with naming_target(final):  # a failed write names no file: name the part
                n = self._write_group(tmp, sequences, extra, attrs or {})
        except BaseException:  # nothing half-written stays behind (a killed writer's is removed by clean_tmp)
            if self.fs.exists(tmp):
                self.fs.rm(tmp, recursive=True)
            raise
        if overwrite and self.fs.exists(final):
            self.fs.rm(final, recursive=True)
        self.fs.mv(tmp, final, recursive=True)
        return n

    def _write_group(self, path: str, sequences: list[Sequence], extra: list[str], attrs: dict) -> int:
        """Write the zarr group of a part (:meth:`write_part`) at ``path``; returns its frame count."""
        joints = sequences[0].pose3d.shape[1] if sequences else 17
        lengths = [len(s) for s in sequences]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

        def stack(get, shape_tail, dtype):
            return (
                np.concatenate([get(s) for s in sequences]).astype(dtype, copy=False)
                if sequences
                else np.zeros((0, *shape_tail), dtype)
            )

        group = zarr.open_group(self._url(path), mode="w", storage_options=self._zarr_options())
        n = int(offsets[-1])
        chunk = max(1, min(n, 65536))
        for key in ("pose3d", "pose2d"):
            data = stack(lambda s, k=key: getattr(s, k), (joints, 3), np.float32)
            group.create_array(key, data=data, chunks=(chunk, joints, 3), config=EVERY_CHUNK)
        group.create_array("offsets", data=offsets, chunks=(len(offsets),), config=EVERY_CHUNK)
        for key in extra:
            sample = sequences[0].frames[key]
            data = stack(lambda s, k=key: np.asarray(s.frames[k]), sample.shape[1:], sample.dtype)
            group.create_array(key, data=data, chunks=(chunk, *data.shape[1:]), config=EVERY_CHUNK)
        group.attrs.update({**attrs, "sequences": [s.meta for s in sequences], "frame_keys": extra})
        return n

    def clean_tmp(self, dataset: str) -> int:
        """Remove half-written parts left by an interrupted run; returns how many were removed."""
        tmp = self._path(dataset, "tmp")
        if not self.fs.exists(tmp):
            return 0
        leftovers = self.fs.ls(tmp, detail=False)
        self.fs.rm(tmp, recursive=True)
        return len(leftovers)

    def write_text(self, path: str, text: str) -> None:
        """Write a small text file atomically (temporary name, then rename: :func:`ingest.atomic.write_text`)."""
        write_text(path, text, self.fs)

    def write_errors(self, dataset: str, records: list[dict]) -> None:
        """Replace ``errors.jsonl`` with the failures of the run that just ended (empty: file removed)."""
        path = self.errors_path(dataset)
        if records:
            self.write_text(path, "".join(json.dumps(r) + "\n" for r in records))
        elif self.fs.exists(path):
            self.fs.rm(path)

    def read_errors(self, dataset: str) -> list[dict]:
        path = self.errors_path(dataset)
        if not self.fs.exists(path):
            return []
        with self.fs.open(path, "r") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def write_index(self, dataset: str) -> dict:
        """Rebuild ``index.json`` from the parts' attributes and return it."""
        index = {"parts": {p: self._read_part_index(dataset, p) for p in self.part_names(dataset)}}
        self.write_text(self._path(dataset, "index.json"), json.dumps(index))
        return index

    # -- reading -------------------------------------------------------------------------------------
    def _zarr_options(self) -> dict | None:
        return self.storage_options or None

    def open_part(self, dataset: str, part: str) -> zarr.Group:
        return zarr.open_group(
            self._url(self._path(dataset, "parts", part)), mode="r", storage_options=self._zarr_options()
        )

    def _read_part_index(self, dataset: str, part: str) -> dict:
        group = self.open_part(dataset, part)
        attrs = dict(group.attrs)
        return {
            "sequences": attrs["sequences"],
            "offsets": group["offsets"][:].tolist(),
            "frame_keys": attrs.get("frame_keys", []),
        }

    def load_index(self, dataset: str) -> dict:
        """``index.json`` when it lists exactly the parts present, else an index rebuilt in memory."""
        parts = self.part_names(dataset)
        path = self._path(dataset, "index.json")
        if self.fs.exists(path):
            with self.fs.open(path, "r") as fh:
                index = json.load(fh)
            if sorted(index["parts"]) == parts:
                return index
        return {"parts": {p: self._read_part_index(dataset, p) for p in parts}}


class DatasetView:
    """Read access to one dataset of a :class:`MotionStore`.

    ``len(view)`` is the number of sequences; iterating yields :class:`Sequence` objects in part order;
    ``view[seq_id]`` loads one sequence (a single slice of its part's arrays); ``view.metas`` lists the
    metadata of every sequence without loading poses.
    """

    def __init__(self, store: MotionStore, name: str):
        self.store = store
        self.name = name
        index = store.load_index(name)
        self._where: dict[str, tuple[str, int, int, list[str], dict]] = {}
        self.metas: list[dict] = []
        for part, entry in index["parts"].items():
            offsets = entry["offsets"]
            for s, meta in enumerate(entry["sequences"]):
                if meta["id"] in self._where:
                    raise ValueError(
                        f"{store.url}/{name}: sequence id {meta['id']!r} appears in parts "
                        f"{self._where[meta['id']][0]!r} and {part!r}"
                    )
                self._where[meta["id"]] = (part, offsets[s], offsets[s + 1], entry.get("frame_keys", []), meta)
                self.metas.append(meta)
        self._groups: dict[str, zarr.Group] = {}

    def __len__(self) -> int:
        return len(self.metas)

    @property
    def ids(self) -> list[str]:
        return [m["id"] for m in self.metas]

    @property
    def frame_counts(self) -> list[int]:
        """Frames of each sequence, aligned with :attr:`metas`."""
        return [self._where[m["id"]][2] - self._where[m["id"]][1] for m in self.metas]

    @property
    def num_frames(self) -> int:
        return sum(self.frame_counts)

    def __contains__(self, seq_id: str) -> bool:
        return seq_id in self._where

    def __getitem__(self, seq_id: str) -> Sequence:
        if seq_id not in self._where:
            raise KeyError(f"sequence {seq_id!r} not in {self.store.url}/{self.name}")
        part, start, stop, frame_keys, meta = self._where[seq_id]
        if part not in self._groups:
            self._groups[part] = self._checked(self.store.open_part(self.name, part), part)
        group = self._groups[part]
        return Sequence(
            meta=meta,
            pose3d=group["pose3d"][start:stop],
            pose2d=group["pose2d"][start:stop],
            frames={k: group[k][start:stop] for k in frame_keys},
        )

    def __iter__(self) -> Iterator[Sequence]:
        for meta in self.metas:
            yield self[meta["id"]]

    def _checked(self, group: zarr.Group, part: str) -> zarr.Group:
        """``group`` once every chunk file of its arrays is present: zarr reads a missing chunk as its fill
        value (zeros), which must never stand in for poses. Parts are written with every chunk stored
        (``write_empty_chunks``), so a missing one is damage.

        Raises:
            OSError: naming the part, the array and how many chunk files are missing.
        """
        for key, array in group.arrays():
            missing = array.nchunks - array.nchunks_initialized
            if missing:
                raise OSError(
                    f"{self.store.url}/{self.name}/parts/{part}/{key}: {missing} of {array.nchunks} chunk files "
                    f"missing (a damaged store; convert the source again with --overwrite)"
                )
        return group
