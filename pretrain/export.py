"""The pretrained network as a plain fp32 file, and loading it (or a DeepSpeed checkpoint) back.

Export file (``torch.save``), by ``objective.kind``:

- ``mpm``: ``{"config": <ModelConfig fields>, "state_dict": <MPM state dict, fp32>}``;
- ``motionbert``: ``{"backbone": <pretrain.backbones name>, "arguments": <its constructor arguments, plain
  values>, "objective": "motionbert", "state_dict": <the backbone's state dict, fp32>}``.

:func:`load_pretrained` (MPM) and :func:`load_pretrained_backbone` (another backbone) accept that file or a
pretraining checkpoint folder (``<run>/checkpoints``, DeepSpeed's layout: ``latest`` names the tag,
``<tag>/mp_rank_00_model_states.pt`` holds ``module`` and the run config under ``config``; ZeRO runs' fp32
master weights are gathered with DeepSpeed's ``zero_to_fp32``), each file read as data only
(:func:`ingest.untrusted.load_torch`); each refuses the other's with one line naming what the file holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ingest.atomic import atomic_path
from ingest.untrusted import load_torch
from pretrain import backbones
from pretrain.model import MPM, ModelConfig


def save_export(path: str | Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write MPM's export file atomically (temporary name, then rename); returns its path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"config": asdict(cfg), "state_dict": state_dict}, tmp)
    return path


def save_backbone_export(
    path: str | Path, name: str, arguments: dict, state_dict: dict[str, torch.Tensor], objective: str = "motionbert"
) -> Path:
    """Write another backbone's export file (module docstring) atomically; returns its path."""
    path = Path(path)
    blob = {"backbone": name, "arguments": dict(arguments), "objective": objective, "state_dict": state_dict}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


@dataclass
class Pretrained:
    """What an export or checkpoint folder holds: ``backbone`` (``"mpm"`` or a :mod:`pretrain.backbones` name),
    the ``objective`` it was pretrained with, MPM's ``config`` or the backbone's constructor ``arguments``, and
    the ``state`` dict."""

    backbone: str
    objective: str
    state: dict[str, torch.Tensor]
    config: ModelConfig | None = None
    arguments: dict | None = None

    def what(self) -> str:
        """A few words naming it: "MPM's network (objective mpm)", "a dstformer backbone (objective
        motionbert)"."""
        if self.backbone == "mpm":
            return f"MPM's network (objective {self.objective})"
        return f"a {self.backbone} backbone (objective {self.objective})"


def _model_config(raw: object, where: Path) -> ModelConfig:
    """ModelConfig from an export's ``config`` or a run config's ``model`` section."""
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: no model config under key 'config'")
    names = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in raw.items() if k in names})


def _from_checkpoint(folder: Path) -> Pretrained:
    latest = folder / "latest"
    if not latest.is_file():
        raise FileNotFoundError(f"{folder}: not an export file nor a DeepSpeed checkpoint folder (no 'latest')")
    tag = latest.read_text().strip()
    model_file = folder / tag / "mp_rank_00_model_states.pt"
    if not model_file.is_file():
        raise FileNotFoundError(f"{latest}: names tag {tag!r}, but {model_file} is missing")
    blob = load_torch(model_file)
    run = blob.get("config")
    model = run.get("model") if isinstance(run, dict) else None
    name = model.get("backbone", "mpm") if isinstance(model, dict) else "mpm"
    objective = (run.get("objective") or {}).get("kind", "mpm") if isinstance(run, dict) else "mpm"
    if name == "mpm":
        found = Pretrained("mpm", objective, {}, config=_model_config(run, model_file))
    else:
        from pretrain.config import ModelSection  # the run config's model section (pretrain.config imports this)

        names = {f.name for f in fields(ModelSection)}
        try:
            net = ModelSection(**{k: v for k, v in model.items() if k in names}).backbone_network()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{model_file}: the run config's model section does not build: {exc}") from exc
        found = Pretrained(name, objective, {}, arguments=net.arguments)
    if any((folder / tag).glob("*zero_pp_rank_*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag)
    else:
        state = blob.get("module")
        if not isinstance(state, dict):
            raise ValueError(f"{model_file}: no 'module' weights")
    found.state = state
    return found


def read_pretrained(path: str | Path) -> Pretrained:
    """What the export file or checkpoint folder ``path`` holds (weights not yet in a network).

    Raises:
        FileNotFoundError: nothing usable at ``path``.
        ValueError: the file lacks ``state_dict`` or its description (``config``, or ``backbone`` and
            ``arguments``), or is another posemill file (one with a ``format`` key: a finetuned lifter).
    """
    path = Path(path)
    if path.is_dir():
        return _from_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such export file or checkpoint folder")
    blob = load_torch(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise ValueError(f"{path}: expected a dict with 'config' and 'state_dict'")
    if "format" in blob:  # another posemill file, e.g. a finetuned lifter ("posemill-lifter/1")
        raise ValueError(
            f"{path}: a {blob['format']!r} file, not a pretraining export or checkpoint folder "
            f"(python -m pretrain writes OUT/pretrained.pt)"
        )
    name = blob.get("backbone", "mpm")
    if name == "mpm":
        return Pretrained("mpm", "mpm", blob["state_dict"], config=_model_config(blob.get("config"), path))
    if name not in backbones.NAMES or not isinstance(blob.get("arguments"), dict):
        raise ValueError(
            f"{path}: backbone {name!r} with arguments {blob.get('arguments')!r} is not one posemill builds"
        )
    return Pretrained(name, str(blob.get("objective", "motionbert")), blob["state_dict"], arguments=blob["arguments"])


def _fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_pretrained(path: str | Path) -> MPM:
    """The pretrained :class:`MPM` (fp32, CPU, eval mode) from an export file or a checkpoint folder.

    Raises:
        FileNotFoundError: nothing usable at ``path``.
        ValueError: as :func:`read_pretrained`; another backbone's export (naming it and the finetuning flag
            it fits); the weights do not fit the config.
    """
    found = read_pretrained(path)
    if found.backbone != "mpm":
        raise ValueError(
            f"{path}: {found.what()}, not MPM's network: it initialises finetuning with --backbone {found.backbone}"
        )
    model = MPM(found.config)
    try:
        model.load_state_dict(_fp32(found.state))
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the stored model config: {exc}") from exc
    return model.eval()


def load_pretrained_backbone(path: str | Path) -> tuple[str, backbones.Backbone]:
    """(name, the pretrained backbone (fp32, CPU, eval mode)) of another backbone's export or checkpoint folder
    (``objective.kind: motionbert``).

    Raises:
        FileNotFoundError: nothing usable at ``path``.
        ValueError: as :func:`read_pretrained`; MPM's export (it fits ``--backbone mpm``); the weights do not
            fit the stored arguments.
    """
    found = read_pretrained(path)
    if found.backbone == "mpm":
        raise ValueError(f"{path}: {found.what()}, not another backbone: it initialises finetuning with --backbone mpm")
    try:
        net = backbones.from_arguments(found.backbone, found.arguments)
        net.load_state_dict(_fp32(found.state))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: weights do not fit the stored {found.backbone} arguments: {exc}") from exc
    return found.backbone, net.eval()
