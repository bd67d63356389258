"""Atomic file writes, the one helper every stage uses: write under a temporary name in the target's folder,
then rename, so a reader never sees a half-written file and a killed writer leaves only a ``.*.tmp-*`` file
(ignored by every reader, and by git).

Local paths are renamed with :func:`os.replace` (atomic on POSIX); other fsspec file systems with their
``mv`` (a copy and delete on object stores, where the final object still appears only once complete).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, fs: Any = None) -> Iterator[Any]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed to ``path``, on an
    exception it is removed and the exception propagates (``path`` keeps its old content).

    Args:
        path: the final file: a local path, or a path of the fsspec file system ``fs``.
        fs: an fsspec file system (None: the local one, and the yielded path is a :class:`pathlib.Path`).

    Yields:
        The temporary path (same type as the path used with ``fs``), whose folder exists.
    """
    if fs is None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return
    path = str(path)
    folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
    if folder:
        fs.makedirs(folder, exist_ok=True)
    tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex[:8]}" if folder else f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def write_text(path: str | Path, text: str, fs: Any = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path, fs) as tmp:
        if fs is None:
            tmp.write_text(text, encoding="utf-8")
        else:
            with fs.open(tmp, "w") as fh:
                fh.write(text)


def write_json(path: str | Path, obj: Any, fs: Any = None, indent: int = 1) -> None:
    """Write ``obj`` as JSON (``indent`` spaces, trailing newline) to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n", fs)
