"""Small motion stores for the shard tests, written with ``MotionStore.write_part`` directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.store import MotionStore, Sequence

WIDTH, HEIGHT, FOCAL = 1000, 1002, 1150.0
SEGMENT, CLIP = 20, 9  # the segment and clip lengths of conftest's ``built`` shards
# (dataset, split, frames per sequence); lengths straddle the clip/segment sizes of the tests, including
# sequences shorter than a window, exactly one segment long, and one frame past a segment.
LAYOUT = {
    ("h36m", "train"): [5, 9, 20, 21, 33, 57, 100, 8, 64, 41, 17, 29],
    ("h36m", "test"): [30, 45],
    ("mpi_inf_3dhp", "train"): [40, 12, 77, 26, 50, 38, 19, 61],
    ("amass", "train"): [44, 23, 70, 3, 52],
}


def make_sequence(
    dataset: str, split: str, index: int, frames: int, rng: np.random.Generator, with_valid: bool
) -> Sequence:
    """A random pose sequence: pelvis ~4-6 m in front of the camera, joints within ~1 m of it."""
    root = np.array([0.3, -0.2, 5.0]) + np.cumsum(rng.normal(0, 0.01, (frames, 3)), axis=0)
    offsets = rng.uniform(-0.9, 0.9, (1, 17, 3)) + rng.normal(0, 0.02, (frames, 17, 3))
    offsets[:, 0] = 0.0
    pose3d = (root[:, None] + offsets).astype(np.float32)
    pixels = pose3d[..., :2] / pose3d[..., 2:] * FOCAL + np.array([WIDTH / 2, HEIGHT / 2])
    pose2d = np.concatenate([pixels, rng.uniform(0.5, 1.0, (frames, 17, 1))], axis=-1).astype(np.float32)
    meta = {
        "id": f"{dataset}_{split}_{index:02d}",
        "subject": f"S{index % 3}",
        "action": f"act{index}",
        "camera": str(index % 4),
        "split": split,
        "fps": 50,
        "width": WIDTH,
        "height": HEIGHT,
        "source": "generated",
        "f": [FOCAL, FOCAL],
        "c": [WIDTH / 2, HEIGHT / 2],
    }
    frames_extra = {}
    if with_valid:
        valid = np.ones(frames, bool)
        valid[rng.integers(0, frames, max(1, frames // 5))] = False
        frames_extra["valid"] = valid
    return Sequence(meta=meta, pose3d=pose3d, pose2d=pose2d, frames=frames_extra)


def make_store(path: Path, layout: dict = LAYOUT, seed: int = 0) -> dict[str, Sequence]:
    """Write the ``layout`` sequences (two parts per dataset and split) to a store at ``path``; returns
    them by id."""
    rng = np.random.default_rng(seed)
    store = MotionStore.open(str(path))
    out = {}
    for (dataset, split), lengths in layout.items():
        seqs = [make_sequence(dataset, split, i, n, rng, dataset == "mpi_inf_3dhp") for i, n in enumerate(lengths)]
        half = len(seqs) // 2
        for k, chunk in enumerate((seqs[:half], seqs[half:])):
            store.write_part(dataset, f"{split}{k}", chunk)
        out.update({s.meta["id"]: s for s in seqs})
    for dataset in {d for d, _ in layout}:
        store.write_index(dataset)
    return out
