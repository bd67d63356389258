"""Pose completion under occlusion (MPM tables 3 and 4): 2D-to-3D and 3D-to-3D with joints hidden.

Occlusions (released MPM ``trainutils/pretrain_epoch.py`` ``TubeMaskGen``): the same joints are hidden in
every frame of a window (a "tube"): 1 or 2 joints drawn at random among all joints, both legs, both arms,
or a leg and an arm of one side. Sides here follow the Human3.6M joint names of ``ingest.skeleton``; the
released code's comments call the joints ``[1, 2, 3, 14, 15, 16]`` "left leg + left arm", which are the
right hip, knee, ankle, shoulder, elbow and wrist by Human3.6M's own naming.

Scoring: every frame of every test sequence (or every ``every``-th) is the centre of a window.

- ``2d``: the lifter sees the occluded 2D window and predicts the centre frame's 3D pose (root set to 0);
  MPJPE in mm over all joints, against the root-relative truth.
- ``3d``: the pretrained network sees the occluded root-relative 3D window; the completed pose keeps the
  visible joints and takes the hidden ones from the network (released ``comp3d`` evaluation: ``comp`` vs
  the input); MPJPE in mm over all joints, as MPM reports, and over the hidden joints only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from finetune.windows import centred_windows
from ingest.skeleton import JointSet
from ingest.store import DatasetView
from pretrain.masking import Masks
from shards.codec import sequence_input_2d, sequence_truth_3d

_LEG = ("hip", "knee", "ankle")
_ARM = ("shoulder", "elbow", "wrist")
OCCLUSIONS: dict[str, int | tuple[str, ...]] = {
    "1 joint": 1,
    "2 joints": 2,
    "2 legs": tuple(f"{s}_{j}" for s in ("left", "right") for j in _LEG),
    "2 arms": tuple(f"{s}_{j}" for s in ("left", "right") for j in _ARM),
    "left leg + left arm": tuple(f"left_{j}" for j in (*_LEG, *_ARM)),
    "right leg + right arm": tuple(f"right_{j}" for j in (*_LEG, *_ARM)),
}
TASKS = ("2d", "3d")

# (B, T, J, d) window, (B, J) bool hidden joints -> (B, J, 3) centre-frame 3D pose, metres root-relative.
Completer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def occlusion_mask(pattern: str, batch: int, joint_set: JointSet, rng: np.random.Generator) -> np.ndarray:
    """(batch, J) bool hidden joints for an :data:`OCCLUSIONS` pattern; random patterns draw anew per row.

    Raises:
        KeyError: unknown pattern.
    """
    if pattern not in OCCLUSIONS:
        raise KeyError(f"unknown occlusion {pattern!r}; known: {list(OCCLUSIONS)}")
    spec = OCCLUSIONS[pattern]
    mask = np.zeros((batch, len(joint_set)), dtype=bool)
    if isinstance(spec, int):
        picks = np.argsort(rng.random((batch, len(joint_set))), axis=1)[:, :spec]
        np.put_along_axis(mask, picks, True, axis=1)
    else:
        mask[:, [joint_set.index(name) for name in spec]] = True
    return mask


def training_occlusions(batch: int, joint_set: JointSet, prob: float, rng: np.random.Generator) -> np.ndarray:
    """(batch, J) bool hidden joints for occlusion-augmented finetuning: each window, with probability
    ``prob``, hides one :data:`OCCLUSIONS` pattern drawn uniformly (all frames), else nothing (MPM trains
    its incomplete-2D lifter on such tube masks, released ``TubeMaskGen``)."""
    mask = np.zeros((batch, len(joint_set)), dtype=bool)
    names = list(OCCLUSIONS)
    for i in np.flatnonzero(rng.random(batch) < prob):
        mask[i] = occlusion_mask(names[rng.integers(len(names))], 1, joint_set, rng)[0]
    return mask


def lifter_completer(lifter: torch.nn.Module) -> Completer:
    """2D-to-3D: :class:`finetune.model.Lifter` with hidden joints replaced by its ``mask_token_2d``."""
    return lambda x, hidden: lifter(x, hidden)[0]


def mpm_completer(mpm: torch.nn.Module) -> Completer:
    """3D-to-3D: :class:`pretrain.model.MPM` reconstructing a 3D window with hidden joints and every frame
    visible; returns the reconstruction's centre frame."""

    def complete(x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        masks = Masks(
            joints=hidden[:, None].expand(b, t, -1),
            frames=torch.zeros(b, t, dtype=torch.bool, device=x.device),
            visible=torch.arange(t, device=x.device).expand(b, t),
        )
        return mpm(None, None, x, masks)[1][:, t // 2]

    return complete


@torch.no_grad()
def evaluate_completion(
    complete: Completer,
    view: DatasetView,
    frames: int,
    joint_set: JointSet,
    task: str,
    patterns: Iterable[str] = tuple(OCCLUSIONS),
    subjects: Iterable[str] | None = None,
    every: int = 1,
    seed: int = 0,
    batch_size: int = 1024,
    device: str = "cpu",
) -> dict:
    """Completion errors on the test split of ``view``.

    Args:
        complete: a :data:`Completer` (:func:`lifter_completer` for ``2d``, :func:`mpm_completer` for ``3d``).
        frames: window length; joint_set: the network's joints; task: ``2d`` or ``3d``.
        patterns: keys of :data:`OCCLUSIONS`; subjects: restrict to these; every: score every n-th frame.
        seed: the random patterns' generator seed (same draws for every network compared).

    Returns:
        ``{pattern: {"mpjpe": mm all joints, "mpjpe_hidden": mm hidden joints, "frames": n}}``.

    Raises:
        ValueError: unknown task, or no test sequence.
    """
    if task not in TASKS:
        raise ValueError(f"completion task must be one of {TASKS}, got {task!r}")
    wanted = None if subjects is None else set(subjects)
    metas = [m for m in view.metas if m["split"] == "test" and (wanted is None or m["subject"] in wanted)]
    if not metas:
        raise ValueError(f"{view.store.url}/{view.name}: no test-split sequence to complete")
    result = {}
    for pattern in patterns:
        rng = np.random.default_rng(seed)
        sums, hidden_sum, hidden_n, count = 0.0, 0.0, 0, 0
        for meta in metas:
            seq = view[meta["id"]]
            truth = sequence_truth_3d(seq, joint_set)[0].astype(np.float32)
            source = sequence_input_2d(seq, joint_set) if task == "2d" else truth
            windows = centred_windows(source.astype(np.float32), frames)[::every]
            centre = truth[::every]
            for start in range(0, len(windows), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size])).to(device)
                hidden = occlusion_mask(pattern, len(x), joint_set, rng)
                pred = complete(x, torch.from_numpy(hidden).to(device)).float().cpu().numpy()
                gt = centre[start : start + batch_size]
                if task == "2d":
                    pred[:, 0] = 0.0
                else:
                    pred = np.where(hidden[..., None], pred, gt)
                err = 1000.0 * np.linalg.norm(pred - gt, axis=-1)
                sums += float(err.mean(axis=1).sum())
                hidden_sum += float(err[hidden].sum())
                hidden_n += int(hidden.sum())
                count += len(x)
        result[pattern] = {"mpjpe": sums / count, "mpjpe_hidden": hidden_sum / max(hidden_n, 1), "frames": count}
    return result
