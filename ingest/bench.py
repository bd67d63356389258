"""``python -m ingest.bench``: speed of the AMASS joint regression, fast path against the full forward pass.

Runs both :meth:`ingest.body_model.BodyModel.joints_fast` and :meth:`~ingest.body_model.BodyModel.joints_full`
on the same motions with one torch thread (per-core figures) and prints one JSON line: ``fast_frames_per_s``,
``full_frames_per_s``, ``ratio``, ``max_abs_diff_m`` (largest difference between the two, metres), plus
what was measured. Motions: the real AMASS files under ``$POSEMILL_REAL_DATA/amass`` when that is set,
else generated SMPL+H walks; resampled to 50 fps first, as the reader does. Body model: the stand-in
(:mod:`ingest.samples.stand_in`) at the size of the real SMPL-H mesh (about 6800 vertices, 459 pose blend-shape
coefficients, a regressor on about 100 vertices, like MeshTransformer's ``J_regressor_h36m_correct.npy``),
since no licensed model is available here. Goal: ratio >= 20 with max_abs_diff_m < 1e-6.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ingest.amass import Motion, load_motion, resample
from ingest.body_model import load_body_model
from ingest.samples.amass import smplh_g_arrays
from ingest.samples.stand_in import write_stand_in

REAL_SIZE_RING = 102  # rings of 102 vertices: 66 * 102 + 90 = 6822 vertices, close to SMPL-H's 6890


def _motions() -> tuple[list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], str]:
    """(gender, full_pose at 50 fps, trans, betas) per SMPL+H motion, and where they came from."""
    root = os.environ.get("POSEMILL_REAL_DATA")
    files = sorted((Path(root) / "amass").rglob("*.npz")) if root else []
    motions = [m for m in (load_motion(f) for f in files) if m is not None and m.model_type == "smplh"]
    source = f"{len(motions)} real AMASS files under {root}/amass"
    if not motions:
        motions = []
        for seed, gender in enumerate(("male", "female")):
            a = smplh_g_arrays(1200, 120.0, gender, seed=seed)
            motions.append(Motion("smplh", gender, 120.0, a["betas"], a["poses"].reshape(1200, 52, 3), a["trans"]))
        source = "2 generated SMPL+H walks"
    out = []
    for m in motions:
        pose, trans = resample(m.full_pose, m.trans, m.fps)
        out.append((m.gender, pose, trans, m.betas))
    return out, source


def _time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> dict:
    torch.set_num_threads(1)
    motions, source = _motions()
    with tempfile.TemporaryDirectory() as tmp:
        genders = tuple(sorted({g for g, *_ in motions}))
        write_stand_in(Path(tmp), layouts=("amass",), genders=genders, ring=REAL_SIZE_RING, model_types=("smplh",))
        models = {g: load_body_model(Path(tmp), "smplh", g) for g in genders}
        frames = sum(len(pose) for _, pose, _, _ in motions)
        fast = [models[g].joints_fast(p, b, t) for g, p, t, b in motions]  # warm-up and result
        full = [models[g].joints_full(p, b, t) for g, p, t, b in motions]
        fast_s = _time(lambda: [models[g].joints_fast(p, b, t) for g, p, t, b in motions], 3)
        full_s = _time(lambda: [models[g].joints_full(p, b, t) for g, p, t, b in motions], 1)
        body = next(iter(models.values()))
        result = {
            "fast_frames_per_s": round(frames / fast_s, 1),
            "full_frames_per_s": round(frames / full_s, 1),
            "ratio": round(full_s / fast_s, 2),
            "max_abs_diff_m": float(max(np.abs(a - b).max() for a, b in zip(fast, full, strict=True))),
            "frames": frames,
            "motions": source,
            "torch_threads": torch.get_num_threads(),
            "body_model": f"stand-in smplh, {body.num_vertices} vertices, float64",
            "regressor_vertices": len(body.regressor.support),
        }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
