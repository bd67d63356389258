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


def write_samples(out: Path, datasets: list[str] | None = None) -> list[str]:
    """Write the sample data of ``datasets`` (default: all) under ``out``; returns the datasets written."""
    names = datasets or list(WRITERS)
    unknown = sorted(set(names) - set(WRITERS))
    if unknown:
        raise ValueError(f"no sample writer for {unknown}; known: {sorted(WRITERS)}")
    for name in names:
        importlib.import_module(WRITERS[name]).write(Path(out))
    return names
