"""Shards from the real Human3.6M files (POSEMILL_REAL_DATA): float16 accuracy and exactly-once streaming."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter

import numpy as np
import pytest

from ingest.h36m import H36MReader
from ingest.job import run_ingest
from ingest.store import MotionStore
from shards.stream import LoaderOptions, make_loader
from shards.writer import build


@pytest.fixture(scope="module")
def real_shards(real_data, tmp_path_factory, ray_local):
    if not (real_data / "h36m").is_dir():
        pytest.skip(f"{real_data / 'h36m'} is absent")
    root = tmp_path_factory.mktemp("shards_real")
    run_ingest(H36MReader(subjects=("S1",)), real_data / "h36m", str(root / "store"), progress=False)
    manifest = build(str(root / "store"), root / "shards", dtype="float16", shard_size=16 << 20, progress=False)
    return root, manifest


def test_float16_shards_within_half_a_millimetre(real_shards):
    root, manifest = real_shards
    view = MotionStore.open(str(root / "store"))["h36m"]
    assert manifest["totals"]["h36m"]["train"]["float32_fallback"] == 0
    worst, segments = 0.0, 0
    for path in sorted((root / "shards" / "h36m").glob("train-*.tar")):
        samples = {}
        with tarfile.open(path) as tar:
            for m in tar:
                key, suffix = m.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(m).read()
        for sample in samples.values():
            meta = json.loads(sample["meta.json"])
            truth = view[meta["id"]].pose3d[meta["start"] : meta["stop"]].astype(np.float64)
            p3 = np.load(io.BytesIO(sample["pose3d.npy"]))
            assert p3.dtype == np.float16
            rebuilt = p3 + np.load(io.BytesIO(sample["root.npy"])).astype(np.float64)[:, None]
            worst = max(worst, np.linalg.norm(rebuilt - truth, axis=-1).max())
            segments += 1
    assert segments == manifest["totals"]["h36m"]["train"]["segments"]
    assert worst <= 0.5e-3


def test_real_windows_exactly_once(real_shards):
    root, _ = real_shards
    view = MotionStore.open(str(root / "store"))["h36m"]
    clip, stride = 243, 100
    loader = make_loader(
        root / "shards",
        LoaderOptions(datasets=["h36m"], clip_len=clip, stride=stride, batch_size=32, resampled=False, with_keys=True),
    )
    seen, checked = Counter(), 0
    for batch in loader:
        seen.update(zip(batch["sequence"], batch["start"].tolist(), strict=True))
        b = checked % len(batch["sequence"])
        seq = view[batch["sequence"][b]]
        start = batch["start"][b].item()
        truth = seq.pose3d[start : start + clip] - seq.pose3d[start : start + clip, :1]
        np.testing.assert_allclose(batch["pose3d"][b].numpy(), truth, atol=0.5e-3)
        checked += 1
    expected = Counter((m["id"], t) for m in view.metas for t in range(0, len(view[m["id"]]) - clip + 1, stride))
    assert seen == expected and len(expected) > 1000
