"""Atomic file writes, the one helper every stage uses: write under a temporary name in the target's folder,
then rename, so a reader never sees a half-written file and a killed writer leaves only a ``.*.tmp-*`` file
(ignored by every reader, and by git).

Local paths are renamed with :func:`os.replace` (atomic on POSIX); other fsspec file systems with their
``mv`` (a copy and delete on object stores, where the final object still appears only once complete).

A write that fails for lack of room (full disk, quota, file size limit) raises an OSError that names no file;
:func:`naming_target` raises it again naming the file being written, so the error says where.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # full disk, quota, file size limit


@contextmanager
def naming_target(path: str | Path) -> Iterator[None]:
    """Inside: an OSError for lack of room (:data:`NO_ROOM`) that names no file, as a failed ``write`` raises
    it, is raised again as ``OSError(errno, strerror, path)``, naming ``path``: the file or folder written."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_ROOM and not exc.filename:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@contextmanager
def atomic_path(path: str | Path, fs: Any = None) -> Iterator[Any]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed to ``path``, on an
    exception it is removed and the exception propagates (``path`` keeps its old content), naming ``path``
    when it is a lack of room (:func:`naming_target`).

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
            with naming_target(path):
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
        with naming_target(path):
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
