"""Shared fixtures: the real-data folder (POSEMILL_REAL_DATA), one local Ray instance per session, and the small
generated store with its shards that the shard and codec tests read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real-data root named by POSEMILL_REAL_DATA (see DESIGN.md); skips with the reason otherwise."""
    root = os.environ.get("POSEMILL_REAL_DATA")
    if not root:
        pytest.skip("POSEMILL_REAL_DATA is not set: real-data tests need ../shared/data")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"POSEMILL_REAL_DATA={root} is not a folder")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) shared by every test that runs an ingest or shard job."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def built(tmp_path_factory, ray_local):
    """(shard folder, {sequence id: Sequence}) of ``shards_fakes.make_store`` built at segment length
    ``SEGMENT`` and clip length ``CLIP``; one per test module (some modules damage their copy)."""
    from shards_fakes import CLIP, SEGMENT, make_store

    from shards.writer import build

    root = tmp_path_factory.mktemp("built")
    sequences = make_store(root / "store")
    build(str(root / "store"), root / "shards", segment_len=SEGMENT, clip_len=CLIP, shard_size=30_000, progress=False)
    return root / "shards", sequences
