"""Data mixtures: named, reproducible selections of whole sequences per dataset, with sampling weights.

The built-in mixtures (``shards/mixtures.json``) follow MPM's data-scale ablation (Zhang et al., "A Unified
2D-3D Human Pose Representation via Masked Pose Modeling", Table E):

* ``small``: Human3.6M half + MPI-INF-3DHP quarter;
* ``base``: Human3.6M + MPI-INF-3DHP half;
* ``large``: Human3.6M + MPI-INF-3DHP + AMASS.

A mixture file maps a name to ``{dataset: fraction}`` or ``{dataset: {"fraction": f, "weight": w}}``.
A fraction selects whole sequences: a sequence is in when :func:`selection_value` of its id is below the
fraction, so selection is deterministic, needs no list, and a smaller fraction always gives a subset of a
larger one (``small`` within ``base`` within ``large``). ``weight`` (default 1) scales the dataset's share
of the resampled windows relative to its window count (``shards.stream``). Only the train split enters
pretraining; the split is chosen by the loader, not by the mixture.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shards import DATASETS

MIXTURES_FILE = Path(__file__).with_name("mixtures.json")


@dataclass(frozen=True)
class Share:
    """One dataset's part of a mixture: the fraction of its sequences kept, and a sampling weight."""

    fraction: float
    weight: float = 1.0


def selection_value(seq_id: str) -> float:
    """A uniform value in [0, 1) from the sha256 of the sequence id (first 8 bytes, big-endian / 2**64)."""
    return int.from_bytes(hashlib.sha256(seq_id.encode()).digest()[:8], "big") / 2.0**64


def parse_mixture(name: str, spec: Mapping, origin: str = "mixture") -> dict[str, Share]:
    """``{dataset: fraction | {"fraction", "weight"}}`` -> ``{dataset: Share}``.

    Raises:
        ValueError: naming ``origin`` and ``name`` for an unknown dataset, a fraction outside (0, 1] or a
            weight <= 0.
    """
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"{origin}: mixture {name!r} must map dataset names to fractions, got {spec!r}")
    out = {}
    for dataset, value in spec.items():
        if dataset not in DATASETS:
            raise ValueError(f"{origin}: mixture {name!r} names unknown dataset {dataset!r} (known {DATASETS})")
        share = Share(**value) if isinstance(value, Mapping) else Share(float(value))
        if not 0 < share.fraction <= 1 or share.weight <= 0:
            raise ValueError(f"{origin}: mixture {name!r}, dataset {dataset!r}: fraction must be in (0, 1] and "
                             f"weight > 0, got {share}")
        out[dataset] = share
    return out


def load_mixtures(path: str | Path | None = None) -> dict[str, dict[str, Share]]:
    """The built-in mixtures, plus (overriding by name) those of the JSON file ``path``."""
    table = {}
    for source in [MIXTURES_FILE, *([Path(path)] if path else [])]:
        with open(source) as fh:
            raw = json.load(fh)
        table.update({name: parse_mixture(name, spec, str(source)) for name, spec in raw.items()})
    return table


def resolve(mixture: str | Mapping | None = None, datasets: list[str] | tuple[str, ...] | None = None,
            mixtures_file: str | Path | None = None) -> dict[str, Share]:
    """The shares to stream: a mixture name (built-in or from ``mixtures_file``), an inline mapping, or
    ``datasets`` taken whole. Exactly one of ``mixture`` and ``datasets`` must be given.

    Raises:
        ValueError: both or neither given, or an unknown mixture name.
    """
    if (mixture is None) == (datasets is None):
        raise ValueError("give exactly one of mixture (a name or {dataset: fraction}) and datasets")
    if datasets is not None:
        return parse_mixture("datasets", {d: 1.0 for d in datasets})
    if isinstance(mixture, Mapping):
        return parse_mixture("inline", mixture)
    table = load_mixtures(mixtures_file)
    if mixture not in table:
        raise ValueError(f"unknown mixture {mixture!r}; known: {sorted(table)}")
    return table[mixture]


def selected(seq_id: str, share: Share | None) -> bool:
    """Whether sequence ``seq_id`` is in a dataset's share (None: the dataset is not in the mixture)."""
    return share is not None and selection_value(seq_id) < share.fraction
