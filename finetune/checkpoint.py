"""The finetuned lifter on disk: one torch file with its sizes and weights (``lifter.pt``).

Training itself checkpoints through DeepSpeed (optimizer, scheduler, data position, for resuming); at the
end of a run the lifter is exported here, and evaluation loads this file.

File content (``torch.save`` of a dict): ``format`` = ``"posemill-lifter/1"``, ``backbone`` (``"mpm"``, or
another :mod:`pretrain.backbones` name; absent in files written before backbones existed: ``"mpm"``), the
network's description (:func:`describe`), ``state_dict``, and ``meta`` (free-form: training options, steps,
the pretrained checkpoint used). MPM's lifter is described by ``config`` (the :class:`pretrain.model.ModelConfig`
fields), ``frames`` (window length), ``strides`` and ``centre_head`` (absent in files written before it existed:
``"strided"``); another backbone by ``arguments``, its constructor's keyword arguments (plain values, so the
file loads with ``weights_only``). A lifter with MPM's refine head (:mod:`finetune.refine`) also has ``refine``
= ``{"hidden", "dropout"}`` (absent: no head), its weights in ``state_dict`` as ``refiner.*``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from finetune.backbone_lifter import BackboneLifter
from finetune.model import Lifter
from finetune.refine import RefineHead
from ingest.atomic import atomic_path
from ingest.untrusted import load_torch
from pretrain import backbones
from pretrain.model import ModelConfig

FORMAT = "posemill-lifter/1"
FILENAME = "lifter.pt"


def describe(lifter: Lifter | BackboneLifter) -> dict:
    """What rebuilds ``lifter`` with fresh weights (:func:`rebuild`): ``backbone`` and its sizes, and ``refine``
    when it has a refine head (module docstring)."""
    if isinstance(lifter, BackboneLifter):
        out = {"backbone": lifter.name, "arguments": dict(lifter.backbone.arguments)}
    else:
        out = {
            "backbone": "mpm",
            "config": asdict(lifter.cfg),
            "frames": lifter.frames,
            "strides": list(lifter.strides),
            "centre_head": lifter.centre_head,
        }
    if lifter.refiner is not None:
        out["refine"] = {"hidden": lifter.refiner.hidden, "dropout": lifter.refiner.dropout}
    return out


def rebuild(description: dict) -> Lifter | BackboneLifter:
    """A lifter of the sizes :func:`describe` gave (or a lifter file holds), randomly initialised.

    Raises:
        KeyError, TypeError, ValueError: an incomplete or inconsistent description.
    """
    name = description.get("backbone", "mpm")
    if name != "mpm":
        lifter = BackboneLifter(name, backbones.from_arguments(name, description["arguments"]))
    else:
        lifter = Lifter(
            ModelConfig(**description["config"]),
            frames=description["frames"],
            strides=tuple(description["strides"]),
            centre_head=description.get("centre_head", "strided"),
        )
    if description.get("refine") is not None:
        lifter.refiner = RefineHead(lifter.joints, **description["refine"])
    return lifter


def save_lifter(path: str | Path, lifter: Lifter | BackboneLifter, meta: dict | None = None) -> Path:
    """Write ``lifter`` to ``path`` atomically: a ``.pt`` file, or else a folder (created) that gets
    ``lifter.pt``. Returns the file written."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / FILENAME
    blob = {"format": FORMAT, **describe(lifter), "state_dict": lifter.state_dict(), "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_lifter(path: str | Path, device: str | torch.device = "cpu") -> tuple[Lifter | BackboneLifter, dict]:
    """Load a lifter saved by :func:`save_lifter` (``path`` a ``.pt`` file or a folder holding ``lifter.pt``).

    Returns:
        (lifter in eval mode, meta).

    Raises:
        FileNotFoundError: nothing there. ValueError: not a lifter file, naming the path and the problem.
    """
    path = Path(path)
    if path.suffix != ".pt":
        path = path / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"no finetuned lifter at {path}")
    blob = load_torch(path, device)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a posemill lifter file (expected key 'format' = {FORMAT!r})")
    try:
        lifter = rebuild(blob)
        lifter.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: lifter file is incomplete or does not match its config: {exc}") from exc
    return lifter.to(device).eval(), blob.get("meta", {})


def require_metres(meta: dict, path: str | Path) -> None:
    """Refuse a lifter whose outputs are not metres: a file of :mod:`finetune.convert` records its units in
    ``meta["output_units"]``, and MotionBERT's DSTformer predicts its own normalised camera units, which its
    evaluation turns into millimetres by a per-frame factor of its preprocessed Human3.6M (``2.5d_factor``, the
    lambda of Ci et al., "Locally Connected Network for Monocular 3D Human Pose Estimation", T-PAMI 2020,
    section 6.2.1) that a motion store does not hold; scored or exported as metres its errors would mean nothing.

    Raises:
        ValueError: naming ``path`` and the units.
    """
    units = meta.get("output_units", "metres")
    if not units.startswith("metres"):
        raise ValueError(
            f"{path}: this lifter predicts {units}, not metres, so posemill's errors and 3D files would be "
            "meaningless; MotionBERT's evaluation scales them by its preprocessed data's per-frame 2.5d_factor: "
            "evaluate it with MotionBERT's code"
        )
