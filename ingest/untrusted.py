"""Files from outside, read as data only, and whatever their parsers raise on damaged bytes named as the file's
error.

VideoPose3D's npz files keep their dicts as 0-d object arrays and SMPL-family ``.pkl`` models are pickles:
numpy's loader with pickles allowed, like the standard unpickler, would run whatever such a file names. Here the
pickle stream is read by an unpickler that resolves only the classes that make up arrays and sparse
matrices (:data:`DATA_TYPES`; the Python documentation's "Restricting Globals" pattern); lists, dicts,
strings and numbers need no class. Anything else, chumpy's ``Ch`` of the original SMPL release included,
is refused with the file's name. Plain arrays are read with ``allow_pickle=False``, and torch files
(checkpoints, exports, DeepSpeed's model and optimizer states) with torch's ``weights_only`` loader
(:func:`load_torch`).

The libraries that parse foreign containers (h5py / HDF5, zipfile and zlib, scipy's MAT reader) raise many
types on damaged bytes: RuntimeError, TypeError, KeyError, zipfile.BadZipFile, zlib.error,
NotImplementedError and more, most without the file's name (found by ``tests/test_fuzz.py``).
:func:`foreign_errors` turns each into the one error type a reader documents, naming the file, so that an
ingest reports and skips the file; :func:`open_h5` is h5py's reader under it.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

# (module, name) of every class a data pickle may name: numpy arrays, dtypes and scalars (numpy 1 and 2
# module paths), protocol-2 bytes, scipy's CSC / CSR matrices (SMPL's J_regressor) and copyreg's plain
# object reconstruction, which builds only classes that pass this same check.
DATA_TYPES = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("scipy.sparse._csc", "csc_matrix"),
        ("scipy.sparse.csc", "csc_matrix"),
        ("scipy.sparse._csr", "csr_matrix"),
        ("scipy.sparse.csr", "csr_matrix"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
    }
)


class DataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`DATA_TYPES`; raises ``pickle.UnpicklingError`` otherwise."""

    def find_class(self, module: str, name: str):
        if (module, name) in DATA_TYPES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not an array type; refusing to load it")


def load_pickle(path: str | Path, encoding: str = "ASCII") -> object:
    """Unpickle a data file (``encoding="latin1"`` for Python 2 pickles such as SMPL's ``.pkl``).

    Raises:
        ValueError: naming the file, when it names any other class or is not a pickle.
    """
    try:
        with open(path, "rb") as fh:
            return DataUnpickler(fh, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not loaded as data: {exc}") from None


@contextmanager
def foreign_errors(path: str | Path, problem: str, error: type[Exception] = OSError) -> Iterator[None]:
    """Within the block, any exception (not BaseException) becomes ``error(f"{path}: {problem} ({type}:
    {message})")``, except a ValueError, KeyError or OSError that already names ``path`` (a reader's own checks,
    the documented types), which passes unchanged. For code that parses the foreign bytes of ``path``."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - parsers of damaged bytes raise any type; the file is what failed
        if isinstance(exc, ValueError | KeyError | OSError) and str(path) in str(exc):
            raise
        raise error(f"{path}: {problem} ({type(exc).__name__}: {str(exc)[:300]})") from None


@contextmanager
def open_h5(path: str | Path) -> Iterator[h5py.File]:
    """``h5py.File(path, "r")``, read-only, under :func:`foreign_errors`: a missing, foreign or damaged file,
    and a damaged object read inside the block, raise OSError naming the file."""
    with foreign_errors(path, "cannot read HDF5 file"), h5py.File(path, "r") as fh:
        yield fh


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file; object arrays (a VideoPose3D dict is ``arr.item()``) through
    :class:`DataUnpickler`, the others with ``allow_pickle=False``.

    Raises:
        ValueError: naming the file (and the member), when a member names a class outside :data:`DATA_TYPES`
            or the file is not a readable npz archive (a bad zip structure, CRC or compressed stream, a
            damaged array header). FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with foreign_errors(path, "not an npz archive", ValueError):
        return _read_npz(path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            key = member.removesuffix(".npy")
            with archive.open(member) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )(fh)
                    if header[2].hasobject:
                        out[key] = DataUnpickler(fh, encoding="ASCII").load()
                        continue
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
                    raise ValueError(f"{path}: member {key!r} not loaded as data: {exc}") from None
            with archive.open(member) as fh:
                out[key] = np.lib.format.read_array(fh, allow_pickle=False)
    return out


def load_torch(path: str | Path, map_location="cpu") -> object:
    """``torch.load`` of a file from outside as data only (``weights_only=True``: tensors, numbers, strings
    and plain containers; no class is imported and nothing in the file runs).

    Raises:
        ValueError: naming the file, when it holds anything else (a pickled object, code) or is not a torch
            file at all (torch's own parse errors, whatever their type, become this one). OSError: a missing
            or unreadable file.
    """
    import torch  # here, so that reading npz or pickles does not import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001  any parse failure of foreign bytes (a text file: KeyError) is this file's
        raise ValueError(
            f"{path}: not loaded: it is not a torch file of tensors and plain values (a checkpoint "
            f"is read as data, never as code): {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
