"""Shared fixtures: the real-data folder (POSEMILL_REAL_DATA) and one local Ray instance per session."""

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
