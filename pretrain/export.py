"""The pretrained network as a plain fp32 file, and loading it (or a DeepSpeed checkpoint) back.

Export file (``torch.save``): ``{"config": <ModelConfig fields>, "state_dict": <MPM state dict, fp32>}``.

:func:`load_pretrained` accepts that file or a pretraining checkpoint folder (``<run>/checkpoints``,
DeepSpeed's layout: ``latest`` names the tag, ``<tag>/mp_rank_00_model_states.pt`` holds ``module`` and
the run config under ``config``; ZeRO runs' fp32 master weights are gathered with DeepSpeed's
``zero_to_fp32``), each file read as data only (:func:`ingest.untrusted.load_torch`).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch

from ingest.atomic import atomic_path
from ingest.untrusted import load_torch
from pretrain.model import MPM, ModelConfig


def save_export(path: str | Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write the export file atomically (temporary name, then rename); returns its path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"config": asdict(cfg), "state_dict": state_dict}, tmp)
    return path


def _model_config(raw: object, where: Path) -> ModelConfig:
    """ModelConfig from an export's ``config`` or a run config's ``model`` section."""
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: no model config under key 'config'")
    names = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in raw.items() if k in names})


def _from_checkpoint(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    latest = folder / "latest"
    if not latest.is_file():
        raise FileNotFoundError(f"{folder}: not an export file nor a DeepSpeed checkpoint folder (no 'latest')")
    tag = latest.read_text().strip()
    model_file = folder / tag / "mp_rank_00_model_states.pt"
    if not model_file.is_file():
        raise FileNotFoundError(f"{latest}: names tag {tag!r}, but {model_file} is missing")
    blob = load_torch(model_file)
    cfg = _model_config(blob.get("config"), model_file)
    if any((folder / tag).glob("*zero_pp_rank_*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag)
    else:
        state = blob.get("module")
        if not isinstance(state, dict):
            raise ValueError(f"{model_file}: no 'module' weights")
    return cfg, state


def load_pretrained(path: str | Path) -> MPM:
    """The pretrained :class:`MPM` (fp32, CPU, eval mode) from an export file or a checkpoint folder.

    Raises:
        FileNotFoundError: nothing usable at ``path``.
        ValueError: the file lacks ``config`` or ``state_dict``, is another posemill file (one with a
            ``format`` key: a finetuned lifter), or the weights do not fit the config.
    """
    path = Path(path)
    if path.is_dir():
        cfg, state = _from_checkpoint(path)
    elif path.is_file():
        blob = load_torch(path)
        if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
            raise ValueError(f"{path}: expected a dict with 'config' and 'state_dict'")
        if "format" in blob:  # another posemill file, e.g. a finetuned lifter ("posemill-lifter/1")
            raise ValueError(
                f"{path}: a {blob['format']!r} file, not a pretraining export or checkpoint folder "
                f"(python -m pretrain writes OUT/pretrained.pt)"
            )
        cfg, state = _model_config(blob.get("config"), path), blob["state_dict"]
    else:
        raise FileNotFoundError(f"{path}: no such export file or checkpoint folder")
    model = MPM(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the stored model config: {exc}") from exc
    return model.eval()
