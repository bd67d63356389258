"""``python -m finetune.convert SRC --backbone NAME [--size full|lite] [--frames F] [--joints J] --out lifter.pt``:
a published checkpoint of another lifter as a posemill lifter file (:mod:`finetune.checkpoint`), which
``python -m finetune.evaluate`` then evaluates.

Released layouts read (the layout is recognised from the file; the backbone, size, frames and joints are given,
as the files do not record them):

- ``motionbert`` (``--backbone dstformer``): Walter0807/MotionBERT ``train.py`` checkpoints, ``{"model_pos":
  state_dict of nn.DataParallel(DSTformer)}``: keys ``module.`` + the DSTformer names;
- ``mmpose`` (``--backbone dstformer``): mmpose 1.x's converted MotionBERT (``mmpose/models/backbones/dstformer.py``
  and ``heads/regression_heads/motion_regression_head.py``), ``{"state_dict": ...}``: ``backbone.*`` with
  ``spat_embed`` for ``pos_embed``, ``attn_regress.i`` for ``ts_attn.i``, MLPs as ``nn.Sequential``
  (``mlp_s.0`` / ``mlp_s.2`` for ``mlp_s.fc1`` / ``mlp_s.fc2``), and ``head.pre_logits.fc`` / ``head.fc`` for
  ``pre_logits.fc`` / ``head``;
- ``mmpose-tcn`` (``--backbone videopose3d``): mmpose's VideoPose3D (``PoseLifter`` with the ``TCN`` backbone,
  ``mmpose/models/backbones/tcn.py``, and ``TemporalRegressionHead``), ``{"state_dict": ...}``: mmcv
  ``ConvModule`` names, ``backbone.expand_conv.conv`` / ``.bn`` for ``expand_conv`` / ``expand_bn``,
  ``backbone.tcn_blocks.i.conv1.0`` and ``.conv2.0`` (each ``.conv`` / ``.bn``) for ``layers_conv`` /
  ``layers_bn`` ``2i`` and ``2i + 1``, and ``head.conv`` (mmpose 1.x) or ``keypoint_head.conv`` (0.x) for
  ``shrink``. Its 2D input is VideoPose3D's screen normalisation and its 3D root-relative metres, as here.
  mmpose's SimpleBaseline3D is the same ``TCN`` with kernel size 1 but 17 joints in and 16 out, normalised by
  dataset statistics kept in its config, not in the checkpoint: it is refused (no such layout is read);
- ``videopose3d`` (``--backbone videopose3d``): facebookresearch/VideoPose3D ``run.py`` checkpoints,
  ``{"model_pos": ...}`` with ``expand_conv.*``, ``expand_bn.*``, ``layers_conv.*``, ``layers_bn.*``,
  ``shrink.*`` (the names of :mod:`pretrain.backbones.videopose3d`); its other entries (``model_traj``,
  optimizer, random state) are not read;
- ``poseformer`` (``--backbone poseformer``): zczcwh/PoseFormer ``run_poseformer.py`` checkpoints,
  ``{"model_pos": state_dict of nn.DataParallel(PoseTransformer)}``: ``module.`` + the reference names, whose
  first component :mod:`pretrain.backbones.poseformer` has in lower case (``Spatial_blocks`` ->
  ``spatial_blocks``).

Every key of the source is mapped and every parameter and buffer of the network is filled, with matching
shapes, or the conversion stops naming each key that is unmatched, missing or of another shape: never a partial
load. The one exception is batch norm's ``num_batches_tracked`` counter, absent from files written before
PyTorch 0.4.1 and unused by layers with a set momentum (all of these): a missing one is left at 0. Files are
read as data only (:func:`ingest.untrusted.load_torch`, ``weights_only``), with numpy arrays and scalars
allowed as data (VideoPose3D stores its generator's random state as one).

Units: VideoPose3D and PoseFormer take posemill's normalised 2D (``x / w * 2 - [1, h / w]``, the same
normalisation) in the Human3.6M 17-joint order and predict root-relative metres, so a converted lifter is
evaluated as trained here. MotionBERT's DSTformer takes the same 2D plus confidence but predicts 3D in its own
normalised camera units (x, y in ``x / w * 2 - 1`` image units, depth scaled alike), which its evaluation turns
into millimetres by a per-frame factor of its preprocessed data; a converted DSTformer's outputs stay in those
units (recorded in the file's ``meta``), and ``python -m finetune.evaluate`` and ``finetune.infer`` refuse it
rather than score or write them as metres (:func:`finetune.checkpoint.require_metres`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import save_lifter
from ingest.cli import user_errors
from ingest.untrusted import load_torch
from pretrain import backbones

# numpy arrays and scalars of numeric and bool dtypes as data (numpy 1 and 2 module paths), as
# ingest.untrusted.DATA_TYPES allows them; torch's weights_only loader also asks for each dtype's class
NUMPY_DATA = [
    (np.ndarray, "numpy.ndarray"),
    (np.dtype, "numpy.dtype"),
    (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    (np._core.multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    (np._core.multiarray.scalar, "numpy._core.multiarray.scalar"),
    *{type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]},
]
UNITS = {
    "videopose3d": "metres, root-relative camera coordinates",
    "poseformer": "metres, root-relative camera coordinates",
    "dstformer": "MotionBERT's normalised camera units (x, y as x / w * 2 - 1 image units, depth alike)",
}
# mmpose's MotionBERT names -> the DSTformer names (after the backbone. / head. prefixes)
MMPOSE_RENAMES = (
    ("backbone.spat_embed", "pos_embed"),
    ("backbone.attn_regress.", "ts_attn."),
    ("head.pre_logits.", "pre_logits."),
    ("head.fc.", "head."),
    ("backbone.", ""),
)
MMPOSE_MLP = {"0": "fc1", "2": "fc2"}  # nn.Sequential(Linear, GELU, Linear, Dropout) indices


def _strip_module(key: str) -> str:
    return key.removeprefix("module.")


def _mmpose(key: str) -> str:
    for old, new in MMPOSE_RENAMES:
        if key.startswith(old):
            key = new + key[len(old) :]
            break
    parts = key.split(".")
    for i in range(len(parts) - 1):
        if parts[i] in ("mlp_s", "mlp_t") and parts[i + 1] in MMPOSE_MLP:
            parts[i + 1] = MMPOSE_MLP[parts[i + 1]]
    return ".".join(parts)


def _mmpose_tcn(key: str) -> str:
    if m := re.fullmatch(r"backbone\.tcn_blocks\.(\d+)\.conv([12])\.0\.(conv|bn)\.(.+)", key):
        block, which, kind, rest = m.groups()
        return f"layers_{kind}.{2 * int(block) + int(which) - 1}.{rest}"
    if m := re.fullmatch(r"backbone\.expand_conv\.(conv|bn)\.(.+)", key):
        return f"expand_{m[1]}.{m[2]}"
    if m := re.fullmatch(r"(?:keypoint_)?head\.conv\.(.+)", key):
        return f"shrink.{m[1]}"
    return key


def _poseformer(key: str) -> str:
    head, _, tail = _strip_module(key).partition(".")
    return head.lower() + ("." + tail if tail else "")


# layout -> (backbone, key map); the state dict is under "model_pos", or "state_dict" for mmpose
LAYOUTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "motionbert": ("dstformer", _strip_module),
    "mmpose": ("dstformer", _mmpose),
    "mmpose-tcn": ("videopose3d", _mmpose_tcn),
    "videopose3d": ("videopose3d", _strip_module),
    "poseformer": ("poseformer", _poseformer),
}


def read_checkpoint(path: str | Path) -> dict:
    """The top-level dict of a checkpoint file, read as data (ValueError naming the file otherwise)."""
    with torch.serialization.safe_globals(NUMPY_DATA):
        blob = load_torch(path)
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: a checkpoint is a dict (model_pos / state_dict), got {type(blob).__name__}")
    return blob


def released_state(blob: dict, backbone: str, path: str | Path = "") -> tuple[str, dict[str, torch.Tensor]]:
    """(layout, source state dict) of a released checkpoint's top-level dict for ``backbone``.

    Raises:
        ValueError: no layout of that backbone fits (naming the file and its top-level keys).
    """
    mmpose = {"dstformer": "mmpose", "videopose3d": "mmpose-tcn"}.get(backbone)
    if mmpose and isinstance(blob.get("state_dict"), dict):
        return mmpose, blob["state_dict"]
    if isinstance(blob.get("model_pos"), dict):
        layout = {"dstformer": "motionbert", "videopose3d": "videopose3d", "poseformer": "poseformer"}.get(backbone)
        if layout:
            return layout, blob["model_pos"]
    known = [layout for layout, (name, _) in LAYOUTS.items() if name == backbone]
    raise ValueError(
        f"{path}: no released {backbone} layout ({', '.join(known) or 'none for this backbone'}) in a file with "
        f"top-level keys {sorted(map(str, blob))[:8]} (expected 'model_pos', or 'state_dict' for mmpose)"
    )


def map_state(
    source: dict[str, torch.Tensor], key_map: Callable[[str], str], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``source`` under the network's names (``key_map``), checked against the network's ``own`` state dict.

    Raises:
        ValueError: naming every source key without a counterpart, every missing key (batch norms'
            ``num_batches_tracked`` excepted, see the module docstring) and every shape mismatch.
    """
    mapped, seen, unmatched, bad = {}, set(), [], []
    for key, value in source.items():
        name = key_map(key)
        if name not in own or not isinstance(value, torch.Tensor):
            unmatched.append(key)
            continue
        seen.add(name)
        if value.shape != own[name].shape:
            bad.append(f"{key} -> {name}: {tuple(value.shape)} vs {tuple(own[name].shape)}")
        else:
            mapped[name] = value
    missing = [k for k in own if k not in seen and not k.endswith("num_batches_tracked")]
    problems = [
        f"{what} ({len(keys)}): {', '.join(keys)}"
        for what, keys in (("unmatched source keys", unmatched), ("missing keys", missing), ("other shapes", bad))
        if keys
    ]
    if problems:
        raise ValueError("the checkpoint does not fit this network: " + "; ".join(problems))
    return {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **mapped}


def convert(
    src: str | Path,
    backbone: str,
    size: str = "full",
    frames: int | None = None,
    joints: int = 17,
    overrides: dict | None = None,
) -> tuple[BackboneLifter, dict]:
    """The lifter of a released checkpoint ``src`` of ``backbone`` (built at ``size``, ``frames``, ``joints``
    and any other constructor ``overrides``, e.g. the channels of a network trained at another size), its
    weights loaded, in evaluation mode, and the meta a lifter file records (``converted_from``, ``layout``,
    ``keys``, ``output_units``).

    Raises:
        ValueError: an unreadable file, no layout of the backbone, or a key map that does not fit (naming the
            file, the keys and shapes).
    """
    if backbone not in UNITS:
        raise ValueError(f"no released layout is read for backbone {backbone!r}; known: {sorted(UNITS)}")
    blob = read_checkpoint(src)
    layout, source = released_state(blob, backbone, src)
    net = backbones.build(backbone, size, joints=joints, frames=frames, **(overrides or {}))
    try:
        state = map_state(source, LAYOUTS[layout][1], net.state_dict())
    except ValueError as exc:
        raise ValueError(f"{src} ({layout} layout, {backbone} {size}, {net.frames} frames): {exc}") from None
    net.load_state_dict(state, strict=True)
    meta = {"converted_from": str(src), "layout": layout, "keys": len(source), "output_units": UNITS[backbone]}
    return BackboneLifter(backbone, net).eval(), meta


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m finetune.convert", description=__doc__.splitlines()[0])
    p.add_argument("src", help="the released checkpoint (MotionBERT, VideoPose3D, PoseFormer; mmpose's DSTformer, TCN)")
    p.add_argument("--backbone", required=True, choices=sorted(UNITS))
    p.add_argument("--size", default="full", choices=["full", "lite"], help="DSTformer's released size")
    p.add_argument("--frames", type=int, default=None, help="receptive field / clip length (default: the size's)")
    p.add_argument("--joints", type=int, default=17)
    p.add_argument("--out", required=True, help="the lifter file to write (a .pt file, or a folder for lifter.pt)")
    args = p.parse_args(argv)
    with user_errors(p.prog):
        lifter, meta = convert(args.src, args.backbone, args.size, args.frames, args.joints)
        out = save_lifter(args.out, lifter, meta)
    print(f"wrote {out} ({meta['layout']} layout, {meta['keys']} keys)")
    return out


if __name__ == "__main__":
    main()
