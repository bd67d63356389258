"""Data mixtures: named, reproducible selections of whole sequences per dataset, with sampling weights.

The built-in mixtures (``shards/mixtures.json``) follow MPM's data-scale ablation (Zhang et al., "A Unified
2D-3D Human Pose Representation via Masked Pose Modeling", Table E):

* ``small``: Human3.6M half + MPI-INF-3DHP quarter;
* ``base``: Human3.6M + MPI-INF-3DHP half;
* ``large``: Human3.6M + MPI-INF-3DHP + AMASS.

and the Human3.6M data-scaling recipe of ``python -m experiments.ablate`` selects by training subject, in the
two supervision regimes of the semi-supervised protocol (VideoPose3D, Pavllo et al. CVPR 2019, section 5:
S1 labelled, S5-S8 unlabelled):

* ``semi-small`` / ``semi-base`` / ``semi-large``: S1 with its 2D, 3D and 2D-3D pairs; then the 2D only of
  S5 + S6, then of S5-S8 (their 3D is never read), plus AMASS in ``semi-large``; S1 weighs 2.4 and 4.9
  there, so that it stays about half of every pretraining batch (S1 has 245k windows of 27 frames, S5 + S6
  592k, S5-S8 1.20M in the full Human3.6M training set), and in ``semi-small`` half of S1's segments are
  streamed as unlabelled (``unlabelled: 0.5``): every scale's batches hold the same share of labelled pairs
  and of unlabelled 2D, and the scales differ only in whose 2D the unlabelled half is;
* ``full-small`` / ``full-base`` / ``full-large``: everything of S1, then S1 + S5 + S6, then S1 + S5-S8 and
  AMASS.

A mixture file maps a name to ``{dataset: fraction}`` or ``{dataset: {"fraction": f, "weight": w,
"subjects": ...}}``. A fraction selects whole sequences: a sequence is in when :func:`selection_value` of its
id is below the fraction, so selection is deterministic, needs no list, and a smaller fraction always gives a
subset of a larger one (``small`` within ``base`` within ``large``). ``weight`` (default 1) scales the
dataset's share of the resampled windows relative to its window count (``shards.stream``). ``subjects``
keeps only the sequences of the named subjects: a list (every modality of each), or a mapping from subject
to the modalities training may use, a list of :data:`MODALITIES`: ``2d`` (the 2D poses), ``3d`` (the 3D
poses), ``pairs`` (2D and 3D of the same frame as input and target, which needs both), or to
``{"modalities": [...], "weight": w, "unlabelled": u}``: in a resampled stream a subject's windows are drawn
at a rate proportional to ``w`` (default 1; those of lighter subjects are thinned, :meth:`Share.rate`), so
that, for example, the labelled subject keeps the same share of every batch as unlabelled subjects are added;
and a share ``u`` in [0, 1) of its segments (default 0) is streamed as unlabelled, its 2D only
(:meth:`Share.unlabelled`), so that a corpus without unlabelled subjects still gives every batch the same
number of labelled and unlabelled windows as one with them (``semi-small``). The stream hides a
modality that is not granted (its frames flagged invalid and zeroed: :mod:`shards.stream`), so "unlabelled"
subjects contribute their 2D and nothing else. Only the train split enters pretraining; the split is chosen
by the loader, not by the mixture.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shards import DATASETS

MIXTURES_FILE = Path(__file__).with_name("mixtures.json")


MODALITIES = ("2d", "3d", "pairs")


@dataclass(frozen=True)
class Share:
    """One dataset's part of a mixture: the fraction of its sequences kept, a sampling weight, and
    optionally the subjects kept with the modalities each grants (``((subject, modalities), ...)``, sorted;
    None: every subject, every modality)."""

    fraction: float
    weight: float = 1.0
    subjects: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    subject_weights: tuple[tuple[str, float], ...] | None = None
    subject_unlabelled: tuple[tuple[str, float], ...] | None = None

    def modalities(self, subject: str | None) -> tuple[str, ...]:
        """The modalities of :data:`MODALITIES` that ``subject``'s sequences grant (empty: not selected)."""
        if self.subjects is None:
            return MODALITIES
        return dict(self.subjects).get(str(subject), ())

    def rate(self, subject: str | None) -> float:
        """The share of ``subject``'s windows a resampled stream keeps: its weight over the largest subject
        weight of the share (1.0 without subject weights)."""
        if not self.subject_weights:
            return 1.0
        weights = dict(self.subject_weights)
        return weights.get(str(subject), 1.0) / max(weights.values())

    def unlabelled(self, subject: str | None) -> float:
        """The share of ``subject``'s segments a resampled stream hands out as unlabelled (2D only: 3D hidden,
        not a pair); 0.0 unless the mixture sets ``unlabelled`` for the subject."""
        return dict(self.subject_unlabelled or ()).get(str(subject), 0.0)


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
        where = f"{origin}: mixture {name!r}, dataset {dataset!r}"
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"fraction", "weight", "subjects"})
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; known: fraction, weight, subjects")
            subjects, subject_weights, subject_unlabelled = _parse_subjects(value.get("subjects"), where)
            share = Share(
                float(value.get("fraction", 1.0)),
                float(value.get("weight", 1.0)),
                subjects,
                subject_weights,
                subject_unlabelled,
            )
        else:
            share = Share(float(value))
        if not 0 < share.fraction <= 1 or share.weight <= 0:
            raise ValueError(f"{where}: fraction must be in (0, 1] and weight > 0, got {share}")
        out[dataset] = share
    return out


def _parse_subjects(spec, where: str):
    """``[S, ...]``, ``{S: [modality, ...]}`` or ``{S: {"modalities": [...], "weight": w, "unlabelled": u}}``
    -> (:attr:`Share.subjects`, :attr:`Share.subject_weights`, :attr:`Share.subject_unlabelled`); raises
    ValueError naming ``where``."""
    if spec is None:
        return None, None, None
    if isinstance(spec, list | tuple):
        spec = {s: list(MODALITIES) for s in spec}
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"{where}: subjects must be a non-empty list or {{subject: [modality, ...]}}, got {spec!r}")
    out, weights, unlabelled = [], [], []
    for subject, mods in spec.items():
        if isinstance(mods, Mapping):
            unknown = sorted(set(mods) - {"modalities", "weight", "unlabelled"})
            weight, share = mods.get("weight", 1.0), mods.get("unlabelled", 0.0)
            if (
                unknown
                or not isinstance(weight, int | float)
                or weight <= 0
                or not isinstance(share, int | float)
                or not 0 <= share < 1
            ):
                raise ValueError(
                    f"{where}: subject {subject!r}: expected {{'modalities': [...], 'weight': w > 0, "
                    f"'unlabelled': u in [0, 1)}}, got {dict(mods)}"
                )
            weights.append((str(subject), float(weight)))
            if share:
                unlabelled.append((str(subject), float(share)))
            mods = mods.get("modalities", list(MODALITIES))
        mods = [mods] if isinstance(mods, str) else list(mods)
        bad = [m for m in mods if m not in MODALITIES]
        if bad or not mods:
            raise ValueError(
                f"{where}: subject {subject!r}: modalities {mods} must be a non-empty list of {MODALITIES}"
            )
        if "pairs" in mods and not {"2d", "3d"} <= set(mods):
            raise ValueError(f"{where}: subject {subject!r}: 'pairs' needs both '2d' and '3d', got {mods}")
        if dict(unlabelled).get(str(subject)) and "2d" not in mods:
            raise ValueError(f"{where}: subject {subject!r}: 'unlabelled' streams 2D only and needs '2d', got {mods}")
        out.append((str(subject), tuple(m for m in MODALITIES if m in mods)))
    return tuple(sorted(out)), (tuple(sorted(weights)) or None), (tuple(sorted(unlabelled)) or None)


def load_mixtures(path: str | Path | None = None) -> dict[str, dict[str, Share]]:
    """The built-in mixtures, plus (overriding by name) those of the JSON file ``path``."""
    table = {}
    for source in [MIXTURES_FILE, *([Path(path)] if path else [])]:
        with open(source) as fh:
            raw = json.load(fh)
        table.update({name: parse_mixture(name, spec, str(source)) for name, spec in raw.items()})
    return table


def resolve(
    mixture: str | Mapping | None = None,
    datasets: list[str] | tuple[str, ...] | None = None,
    mixtures_file: str | Path | None = None,
) -> dict[str, Share]:
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


def selected(seq_id: str, share: Share | None, subject: str | None = None) -> bool:
    """Whether sequence ``seq_id`` of ``subject`` is in a dataset's share (None: the dataset is not in the
    mixture). A share that names subjects needs the ``subject``.

    Raises:
        ValueError: the share selects by subject and ``subject`` is None.
    """
    if share is None:
        return False
    if share.subjects is not None:
        if subject is None:
            raise ValueError(
                f"sequence {seq_id}: the mixture selects by subject, but the subject is unknown "
                f"(shards built before subject selection: rebuild them with python -m shards build)"
            )
        if not share.modalities(subject):
            return False
    return selection_value(seq_id) < share.fraction
