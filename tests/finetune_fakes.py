"""Shared pieces of the finetune tests: generated Human3.6M-like sequences whose 3D is a known function of
their 2D, exact predictors for them (errors known without running a network), and a one-process
torch.distributed environment for DeepSpeed."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

import numpy as np
import torch

from finetune.windows import PerWindow
from ingest.skeleton import H36M17
from ingest.store import Sequence
from shards.codec import normalize_2d, sequence_truth_3d


def lift(xy: np.ndarray) -> np.ndarray:
    """The 'true' lifting map of the generated data: normalised (x, y) -> camera (x, y, 0.3 y), metres.
    It commutes with the horizontal flip (x -> -x), so flip averaging leaves an exact predictor exact."""
    return np.stack([xy[..., 0], xy[..., 1], 0.3 * xy[..., 1]], axis=-1)


def exact(windows: torch.Tensor, shift: int = 0, bias: float = 0.0) -> torch.Tensor:
    """Predictor applying :func:`lift` to frame centre + shift of each window, plus an x bias (metres)."""
    centre = windows[:, windows.shape[1] // 2 + shift, :, :2].numpy()
    out = lift(centre)
    out = out - out[:, :1] + np.array([bias, 0.0, 0.0])
    return torch.from_numpy(out.astype(np.float32))


def make_sequence(rng, sid, subject, action, split, n, width=1000, height=1002, frames=None) -> Sequence:
    pose2d = np.concatenate([rng.uniform(100, 900, (n, 17, 2)), np.ones((n, 17, 1))], -1).astype(np.float32)
    pose3d = lift(normalize_2d(pose2d, width, height)) + np.array([0.2, -0.1, 4.0])
    meta = {
        "id": sid,
        "subject": subject,
        "action": action,
        "camera": "54138969",
        "split": split,
        "fps": 50,
        "width": width,
        "height": height,
        "source": "generated",
    }
    return Sequence(meta=meta, pose3d=pose3d.astype(np.float32), pose2d=pose2d, frames=frames or {})


WIDTH, HEIGHT = 1000, 1002  # projected_sequence's image and pinhole camera
F, C = np.array([1145.0, 1143.8]), np.array([512.5, 515.5])  # off the image centre: a flip moves c_x


def projected_sequence(rng, sid: str, subject: str, split: str, n: int) -> Sequence:
    """A random motion ~5 m in front of a pinhole camera (no distortion), its 2D the exact projection."""
    root = np.array([0.3, -0.2, 5.0]) + np.cumsum(rng.normal(0, 0.01, (n, 3)), axis=0)
    offsets = rng.uniform(-0.8, 0.8, (1, 17, 3)) + np.cumsum(rng.normal(0, 0.01, (n, 17, 3)), axis=0)
    offsets[:, 0] = 0.0
    pose3d = root[:, None] + offsets
    pixels = pose3d[..., :2] / pose3d[..., 2:] * F + C
    pose2d = np.concatenate([pixels, np.ones((n, 17, 1))], -1)
    meta = {
        "id": sid,
        "subject": subject,
        "action": "Walking" if split == "train" else "Eating",
        "camera": "54138969",
        "split": split,
        "fps": 50,
        "width": WIDTH,
        "height": HEIGHT,
        "source": "generated",
        "f": F.tolist(),
        "c": C.tolist(),
    }
    return Sequence(meta=meta, pose3d=pose3d.astype(np.float32), pose2d=pose2d.astype(np.float32))


@contextmanager
def one_rank_env():
    """Environment of rank 0 of 1 on a free port. DeepSpeed caches the process group it creates, so the
    group stays up for the session and its environment must too: later engines in this process (the
    pretraining tests' among them) check LOCAL_RANK. Values already set are kept."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in dict(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DS_ACCELERATOR="cpu"
    ).items():
        os.environ.setdefault(key, value)
    yield


def mean_pose_predictor(view, joint_set=H36M17):
    """The trivial baseline, a :class:`finetune.windows.PerWindow` centre predictor: always predict the mean
    root-relative 3D pose (camera coordinates, metres) of every valid frame of the train split of ``view``.
    Raises ValueError when there is no train sequence."""
    total, count = 0.0, 0
    for meta in view.metas:
        if meta["split"] == "train":
            pose, bad = sequence_truth_3d(view[meta["id"]], joint_set)
            total = total + pose[~bad].sum(axis=0)
            count += int((~bad).sum())
    if not count:
        raise ValueError(f"{view.store.url}/{view.name}: no train-split sequence for the mean pose")
    mean = torch.from_numpy(total / count).float()
    return PerWindow(lambda windows: mean.expand(len(windows), -1, -1))


def random_batch_norm_statistics(model, seed=0):
    """Non-trivial running statistics, so that batch norm is no identity in evaluation mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
