"""The field's other 2D-to-3D lifters beside MPM, each faithful to its released code (one module each; sources
and commits in their docstrings), selected by name:

- ``videopose3d``: :class:`~pretrain.backbones.videopose3d.TemporalModelOptimized1f` (the single-frame
  training variant; :class:`~pretrain.backbones.videopose3d.TemporalModel` takes the same weights),
  centre frame of 27 / 81 / 243 frames;
- ``simplebaseline``: :class:`~pretrain.backbones.simplebaseline.SimpleBaseline`, Martinez' residual MLP, one
  frame;
- ``poseformer``: :class:`~pretrain.backbones.poseformer.PoseFormer`, centre frame of 81 frames;
- ``dstformer``: :class:`~pretrain.backbones.dstformer.DSTformer`, MotionBERT, sequence to sequence over up to
  243 frames, sizes ``full`` and ``lite``.

Their common contract (input, output, ``protocol``, ``arguments``) is :class:`~pretrain.backbones.base.Backbone`.
"""

from __future__ import annotations

import inspect

from pretrain.backbones import dstformer, poseformer, simplebaseline, videopose3d
from pretrain.backbones.base import PROTOCOLS, Backbone

MODULES = {
    "videopose3d": (videopose3d, videopose3d.TemporalModelOptimized1f),
    "simplebaseline": (simplebaseline, simplebaseline.SimpleBaseline),
    "poseformer": (poseformer, poseformer.PoseFormer),
    "dstformer": (dstformer, dstformer.DSTformer),
}
NAMES = tuple(MODULES)

__all__ = ["NAMES", "PROTOCOLS", "Backbone", "argument_names", "build", "from_arguments", "sizes"]


def _known(name: str) -> None:
    if name not in MODULES:
        raise ValueError(f"unknown backbone {name!r}; known: {list(NAMES)}")


def sizes(name: str) -> list[str]:
    """The released sizes of backbone ``name`` (ValueError for an unknown name)."""
    _known(name)
    return sorted(MODULES[name][0].SIZES)


def argument_names(name: str) -> tuple[str, ...]:
    """The constructor arguments of backbone ``name`` (ValueError for an unknown name)."""
    _known(name)
    return tuple(inspect.signature(MODULES[name][1]).parameters)


def build(name: str, size: str = "full", joints: int = 17, frames: int | None = None, **overrides) -> Backbone:
    """The backbone ``name`` at a released ``size`` (its module's ``SIZES``: ``full`` everywhere, ``lite`` for
    dstformer) for ``joints`` joints, with ``frames`` (default: the size's, else the class default) and any
    constructor argument in ``overrides`` (e.g. ``channels=64`` for a small test network).

    Raises:
        ValueError: an unknown name or size, or arguments the backbone does not take (naming them).
    """
    if size not in sizes(name):
        raise ValueError(f"backbone {name} has no size {size!r}; its sizes: {sizes(name)}")
    args = {**MODULES[name][0].SIZES[size], "joints": joints, **({"frames": frames} if frames else {}), **overrides}
    return from_arguments(name, args)


def from_arguments(name: str, arguments: dict) -> Backbone:
    """The backbone ``name`` built from its constructor ``arguments`` (a backbone's ``arguments``, as a
    checkpoint records them). Raises ValueError for an unknown name or argument."""
    unknown = sorted(set(arguments) - set(argument_names(name)))
    if unknown:
        raise ValueError(f"backbone {name} takes no argument {unknown}; its arguments: {list(argument_names(name))}")
    return MODULES[name][1](**arguments)
