"""Ray orchestration of an ingest: one task per source file, atomic parts, resumable, errors recorded.

Every dataset reader implements :class:`Reader`; :func:`run_ingest` does the rest the same way for all:

1. removes half-written parts left by an interrupted run (``STORE/<dataset>/tmp``);
2. lists the reader's source files and skips those whose part exists (unless ``overwrite``);
3. runs one Ray task per remaining file (retried when a worker is lost), each reading the file and
   writing its part under a temporary name, then renaming it;
4. records every file that failed in ``STORE/<dataset>/errors.jsonl`` with its path and reason, rebuilds
   the dataset index and returns a summary. The CLI exits non-zero when any file failed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from ingest.store import MotionStore, Sequence


class DroppedByRule(Exception):  # noqa: N818 - a decision, not a failure
    """Raised by :meth:`Reader.read` for a readable file that a documented rule of the dataset excludes
    (e.g. Human3.6M S11 "Directions"). The job records the reason, writes an empty part (so re-runs skip
    the file) and does not count the file as failed."""


class Reader(Protocol):
    """What a dataset reader provides. Instances carry their options and must be picklable (Ray).

    Optionally a reader also has ``part_attrs(path) -> dict``: extra attributes of the part written for
    ``path``, e.g. the conversion options (MPI-INF-3DHP's annotation choice and camera set)."""

    dataset: str  # store dataset name: "h36m", "mpi_inf_3dhp" or "amass"

    def sources(self, src: Path) -> list[Path]:
        """Source files under ``src`` to convert, one Ray task each, sorted. Raises FileNotFoundError
        naming ``src`` when it holds none."""

    def part_name(self, src: Path, path: Path) -> str:
        """Store part name of ``path`` (letters, digits, ``_``, ``-``), unique within the dataset."""

    def read(self, path: Path) -> list[Sequence]:
        """Convert one source file. Raises an exception whose message names the file, key and problem,
        or :class:`DroppedByRule`; returns [] for a file that is valid but holds nothing to keep."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class IngestSummary:
    """Outcome of :func:`run_ingest`. ``failed`` lists {"source", "error"} records, ``dropped`` lists
    {"source", "reason"} for files a dataset rule excludes."""

    dataset: str
    files: int = 0
    skipped: int = 0
    converted: int = 0
    sequences: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.dataset}: {self.files} files ({self.converted} converted, {self.skipped} already done, "
            f"{len(self.failed)} failed, {len(self.dropped)} dropped by rule), {self.sequences} sequences, "
            f"{self.frames} frames, {self.seconds:.1f} s"
        )


def convert_file(
    reader: Reader, path: Path, part: str, store_url: str, storage_options: dict | None, overwrite: bool
) -> dict:
    """Read one source file and write its part; never raises (the error becomes the result).

    Returns:
        {"source", "part", "sequences", "frames"} on success (plus "dropped": reason for a file excluded by
        rule), {"source", "part", "error"} on failure.
    """
    try:
        attrs = {"source": str(path)}
        try:
            sequences = reader.read(path)
        except DroppedByRule as rule:
            sequences, attrs["dropped"] = [], str(rule)
        if hasattr(reader, "part_attrs"):  # optional: how the reader converted this file
            attrs.update(reader.part_attrs(path))
        checksum = attrs["checksum"] = sha256_file(path)
        for seq in sequences:
            seq.meta.setdefault("source", str(path))
            seq.meta["checksum"] = checksum
        store = MotionStore.open(store_url, storage_options)
        frames = store.write_part(reader.dataset, part, sequences, attrs=attrs, overwrite=overwrite)
        result = {"source": str(path), "part": part, "sequences": len(sequences), "frames": frames}
        return result | ({"dropped": attrs["dropped"]} if "dropped" in attrs else {})
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return {"source": str(path), "part": part, "error": f"{type(exc).__name__}: {exc}"}


@functools.cache
def _convert_remote():
    """:func:`convert_file` as a Ray remote function (made once; Ray is imported only to launch tasks, so
    importing this module or a reader does not import it)."""
    import ray

    return ray.remote(max_retries=3, num_cpus=1)(convert_file)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``, ...) or start a
    local one with ``num_cpus`` CPUs; inside ``ray job submit`` the cluster is found automatically."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def run_ingest(
    reader: Reader,
    src: Path,
    store_url: str,
    *,
    overwrite: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    storage_options: dict | None = None,
    progress: bool = True,
) -> IngestSummary:
    """Convert every source file of ``reader`` under ``src`` into ``store_url``, in parallel on Ray. Files
    whose part names collide (:meth:`Reader.part_name` of two paths alike) all fail, each naming the others.

    Args:
        reader: a :class:`Reader` carrying its options.
        src: the dataset's root folder.
        store_url: motion store path or fsspec URL.
        overwrite: reconvert files whose part exists.
        address, num_cpus: see :func:`ensure_ray`.
        storage_options: fsspec options for a remote store.
        progress: show a tqdm progress bar over files.

    Returns:
        :class:`IngestSummary`; ``errors.jsonl`` and ``index.json`` are written in the store.
    """
    start = time.perf_counter()
    src = Path(src)
    store = MotionStore.open(store_url, storage_options)
    store.clean_tmp(reader.dataset)
    summary = IngestSummary(dataset=reader.dataset)
    paths = reader.sources(src)
    summary.files = len(paths)
    by_part: dict[str, list[Path]] = {}
    for path in paths:
        by_part.setdefault(reader.part_name(src, path), []).append(path)
    todo = []
    for path in paths:
        part = reader.part_name(src, path)
        if len(by_part[part]) > 1:  # two files, one part name (e.g. "a b.npz" and "a_b.npz"): neither is kept
            others = ", ".join(str(p) for p in by_part[part] if p != path)
            summary.failed.append(
                {
                    "source": str(path),
                    "error": f"its store part name {part!r} is also that of {others}; rename one of them "
                    f"(neither is converted)",
                }
            )
        elif store.has_part(reader.dataset, part) and not overwrite:
            changed = _changed_attrs(store, reader, part, path)
            if changed:  # converted with other options: never kept silently, never replaced unasked
                summary.failed.append(
                    {
                        "source": str(path),
                        "error": f"part {part} of {store.url} was converted "
                        f"with {changed}; pass --overwrite to reconvert, or use another store",
                    }
                )
            else:
                summary.skipped += 1
        else:
            todo.append((path, part))
    if todo:
        import ray

        ensure_ray(address, num_cpus)
        convert_remote = _convert_remote()
        pending = [
            convert_remote.remote(reader, path, part, store.url, storage_options, overwrite) for path, part in todo
        ]
        with tqdm(total=len(pending), desc=f"ingest {reader.dataset}", unit="file", disable=not progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                result = ray.get(done[0])
                if "error" in result:
                    summary.failed.append({"source": result["source"], "error": result["error"]})
                    bar.write(f"FAILED {result['source']}: {result['error']}")
                else:
                    if "dropped" in result:
                        summary.dropped.append({"source": result["source"], "reason": result["dropped"]})
                        bar.write(f"dropped {result['source']}: {result['dropped']}")
                    summary.converted += 1
                    summary.sequences += result["sequences"]
                    summary.frames += result["frames"]
                bar.update()
    summary.failed.sort(key=lambda r: r["source"])
    store.write_errors(reader.dataset, summary.failed)
    if store.part_names(reader.dataset):
        store.write_index(reader.dataset)
    summary.seconds = time.perf_counter() - start
    return summary


def _changed_attrs(store: MotionStore, reader: Reader, part: str, path: Path) -> dict:
    """{attribute: (stored value, requested value)} where the existing ``part`` was converted with other
    reader options (``part_attrs``) than ``reader`` has now; empty when they agree or the reader has none."""
    if not hasattr(reader, "part_attrs"):
        return {}
    stored = dict(store.open_part(reader.dataset, part).attrs)
    return {k: (stored.get(k), v) for k, v in reader.part_attrs(path).items() if stored.get(k) != v}


def summary_json(summary: IngestSummary) -> str:
    """One JSON line of the summary (for logs and ``ray job`` output)."""
    return json.dumps(asdict(summary))
