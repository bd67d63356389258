"""Reading the pretraining network's weights for finetuning.

Accepted checkpoints (``--init``):

- a DeepSpeed checkpoint folder of a pretraining run (``latest`` names the tag; the model states file
  ``<tag>/mp_rank_00_model_states.pt`` holds ``module``, the :class:`pretrain.model.MPM` state dict, and the
  client state saved with it, which carries the model sizes under ``config``);
- a torch file (e.g. an export) holding ``config`` and one of ``state_dict`` / ``module`` / ``model``.

``config`` is either the :class:`pretrain.model.ModelConfig` fields or a run config with them under ``model``.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from pretrain.model import ModelConfig

_STATE_KEYS = ("state_dict", "module", "model")


def _model_config(blob: dict, where: Path) -> ModelConfig:
    cfg = blob.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        cfg = cfg["model"]
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: no model config (key 'config') next to the weights")
    names = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in cfg.items() if k in names})


def _model_file(path: Path) -> Path:
    if path.is_file():
        return path
    latest = path / "latest"
    if not latest.is_file():
        raise FileNotFoundError(f"{path}: neither a checkpoint file nor a DeepSpeed checkpoint folder "
                                "(no 'latest' file)")
    model_file = path / latest.read_text().strip() / "mp_rank_00_model_states.pt"
    if not model_file.is_file():
        raise FileNotFoundError(f"{path}: 'latest' names {model_file.parent.name}, which has no {model_file.name}")
    return model_file


def load_pretrained(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(model sizes, MPM state dict) of a pretraining checkpoint; see the module docstring.

    Raises:
        FileNotFoundError: nothing usable at ``path``. ValueError: no weights or no config, naming the file.
    """
    model_file = _model_file(Path(path))
    blob = torch.load(model_file, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict):
        raise ValueError(f"{model_file}: expected a dict, got {type(blob).__name__}")
    state = next((blob[k] for k in _STATE_KEYS if isinstance(blob.get(k), dict)), None)
    if state is None:
        raise ValueError(f"{model_file}: no weights under any of {_STATE_KEYS}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return _model_config(blob, model_file), state
