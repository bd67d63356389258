"""``python -m ingest samples OUT``: the embedded default data, one native-format writer per dataset.

Each writer (``ingest/samples_<dataset>.py``) writes small synthetic files in its dataset's own layout
under ``OUT/<dataset folder>/``, so every reader runs on real formats out of the box.
"""

from __future__ import annotations

import importlib
from pathlib import Path

WRITERS = {"h36m": "ingest.samples_h36m", "mpi_inf_3dhp": "ingest.samples_mpi_inf_3dhp",
           "amass": "ingest.samples_amass"}


def write_samples(out: Path, datasets: list[str] | None = None) -> list[str]:
    """Write the sample data of ``datasets`` (default: all) under ``out``; returns the datasets written."""
    names = datasets or list(WRITERS)
    unknown = sorted(set(names) - set(WRITERS))
    if unknown:
        raise ValueError(f"no sample writer for {unknown}; known: {sorted(WRITERS)}")
    for name in names:
        importlib.import_module(WRITERS[name]).write(Path(out))
    return names
