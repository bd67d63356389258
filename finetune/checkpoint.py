"""The finetuned lifter on disk: one torch file with its sizes and weights (``lifter.pt``).

Training itself checkpoints through DeepSpeed (optimizer, scheduler, data position, for resuming); at the
end of a run the lifter is exported here, and evaluation loads this file.

File content (``torch.save`` of a dict): ``format`` = ``"posemill-lifter/1"``, ``config`` (the
:class:`pretrain.model.ModelConfig` fields), ``frames`` (window length), ``strides``, ``centre_head`` (absent
in files written before it existed: ``"strided"``), ``state_dict``, and ``meta`` (free-form: training
options, steps, the pretrained checkpoint used).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from finetune.model import Lifter
from ingest.atomic import atomic_path
from ingest.untrusted import load_torch
from pretrain.model import ModelConfig

FORMAT = "posemill-lifter/1"
FILENAME = "lifter.pt"


def save_lifter(path: str | Path, lifter: Lifter, meta: dict | None = None) -> Path:
    """Write ``lifter`` to ``path`` atomically: a ``.pt`` file, or else a folder (created) that gets
    ``lifter.pt``. Returns the file written."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / FILENAME
    blob = {
        "format": FORMAT,
        "config": asdict(lifter.cfg),
        "frames": lifter.frames,
        "strides": list(lifter.strides),
        "centre_head": lifter.centre_head,
        "state_dict": lifter.state_dict(),
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_lifter(path: str | Path, device: str | torch.device = "cpu") -> tuple[Lifter, dict]:
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
        lifter = Lifter(
            ModelConfig(**blob["config"]),
            frames=blob["frames"],
            strides=tuple(blob["strides"]),
            centre_head=blob.get("centre_head", "strided"),
        )
        lifter.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: lifter file is incomplete or does not match its config: {exc}") from exc
    return lifter.to(device).eval(), blob.get("meta", {})
