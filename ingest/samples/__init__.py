"""Synthetic sample data: the embedded default data (``python -m ingest samples OUT``) and the test fixtures,
written in the datasets' native formats. Nothing here is read by a conversion; it only writes inputs.

Each writer (``ingest/samples/<dataset>.py``) writes small synthetic files in its dataset's own layout
under ``OUT/<dataset folder>/``, so every reader runs on real formats out of the box. Beside them:
:mod:`ingest.samples.motion` (the moving skeleton every writer animates) and :mod:`ingest.samples.stand_in`
(the generated stand-in SMPL-H / SMPL-X body models, since no licensed model may be shipped).
"""

from __future__ import annotations

import importlib
from pathlib import Path

WRITERS = {
    "h36m": "ingest.samples.h36m",
    "mpi_inf_3dhp": "ingest.samples.mpi_inf_3dhp",
    "amass": "ingest.samples.amass",
}


# Left in every folder write_samples fills: only such a folder (or an empty or new one) is written into again.
MARKER = ".posemill-samples"


def write_samples(out: Path, datasets: list[str] | None = None) -> list[str]:
    """Write the sample data of ``datasets`` (default: all) under ``out``; returns the datasets written.

    The writers replace files of the native layouts (``cameras.h5``, takes, body models), so a folder that
    holds anything and was not written by this function (no :data:`MARKER` in it), a real data root for
    instance, is refused before anything is written.

    Raises:
        ValueError: an unknown dataset name.
        FileExistsError: ``out`` is not empty and holds no :data:`MARKER`.
    """
    out = Path(out)
    names = datasets or list(WRITERS)
    unknown = sorted(set(names) - set(WRITERS))
    if unknown:
        raise ValueError(f"no sample writer for {unknown}; known: {sorted(WRITERS)}")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise FileExistsError(
            f"{out}: not empty and not written by 'ingest samples' (no {MARKER}); the sample writers would "
            f"replace files there (a real data root's cameras.h5 and takes): give an empty or new folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m ingest samples; sample data only\n")
    for name in names:
        importlib.import_module(WRITERS[name]).write(Path(out))
    return names
