"""The real Ray launch path: `ray start --head`, then cluster/ray/submit_ingest.sh (`ray job submit
--working-dir .` of the ingest and of the shard build) against it, checked in the store and the shards.

The head is a separate Ray (own ports, own --temp-dir, own auth token) so it never meets the in-process
`ray_local` fixture; it is stopped by ending the processes it started, by id, never with `ray stop` (which
ends every Ray on the machine, the suite's own included).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from ingest.h36m import H36MReader
from ingest.store import MotionStore
from shards.manifest import load_manifest, verify

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayHead:
    address: str  # job server (dashboard) URL
    env: dict  # environment for clients of this cluster: PATH with the venv first, its auth token


def run_group(cmd: list[str], env: dict, timeout: float, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout end the whole group (the `ray` CLI it started too)."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} ran over {timeout} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def end_processes(head: subprocess.Popen, temp_dir: str) -> None:
    """End the head started by this test and every process it started: SIGTERM to `ray start --block` (Ray
    then stops its own processes), then SIGKILL to whatever is left among its descendants and the processes
    whose command line names this head's private temp dir."""

    def ours() -> list[psutil.Process]:
        procs = []
        if head.poll() is None:
            procs += psutil.Process(head.pid).children(recursive=True)
        for proc in psutil.process_iter(["cmdline"]):
            if any(temp_dir in arg for arg in proc.info["cmdline"] or []):
                procs.append(proc)
        return [p for p in {p.pid: p for p in procs}.values() if p.pid != os.getpid()]

    started = ours()
    if head.poll() is None:
        head.terminate()
        try:
            head.wait(timeout=40)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
    _, alive = psutil.wait_procs(started, timeout=10)
    for proc in alive + ours():
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def ray_head():
    """A local Ray head (2 CPUs) with its dashboard's job server, on free ports; ended after the test."""
    temp_dir = tempfile.mkdtemp(prefix="pmray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    dashboard = free_port()
    cmd = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "2",
        "--port",
        str(free_port()),
        "--include-dashboard=true",
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dashboard),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--ray-client-server-port",
        str(free_port()),
        "--temp-dir",
        temp_dir,
    ]
    log = open(Path(temp_dir) / "head.log", "w")  # noqa: SIM115 - closed in the finally below
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # the server answers (401 until the client shows the token): it is up
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    log_text = (Path(temp_dir) / "head.log").read_text()
                    pytest.fail(f"ray head did not come up:\n{log_text[-4000:]}")
                time.sleep(0.5)
        yield RayHead(address, env)
    finally:
        end_processes(head, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_ingest_and_shards_as_ray_jobs(ray_head, tmp_path):
    data, store, shards = tmp_path / "data", tmp_path / "store", tmp_path / "shards"
    subprocess.run(
        [sys.executable, "-m", "ingest", "samples", str(data), "--datasets", "h36m"], check=True, capture_output=True
    )
    env = ray_head.env | {
        "RAY_ADDRESS": ray_head.address,
        "DATA": str(data),
        "STORE": str(store),
        "SHARDS": str(shards),
    }
    result = run_group(["bash", "cluster/ray/submit_ingest.sh"], env, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]
    # Both ran as jobs of this cluster, the ingest one Ray task per file inside the job.
    assert result.stdout.count("succeeded") >= 2, result.stdout[-4000:]
    assert "Connected to Ray cluster" in result.stdout

    # The store holds exactly what the reader makes of each file, read here directly (no Ray).
    reader = H36MReader()
    expected = {seq.meta["id"]: seq for path in reader.sources(data / "h36m") for seq in reader.read(path)}
    view = MotionStore.open(str(store))["h36m"]
    assert sorted(view.ids) == sorted(expected)
    for seq_id, want in expected.items():
        got = view[seq_id]
        np.testing.assert_array_equal(got.pose3d, want.pose3d)
        np.testing.assert_array_equal(got.pose2d, want.pose2d)
        assert got.meta["subject"] == want.meta["subject"] and got.meta["camera"] == want.meta["camera"]

    # The shard build job wrote shards that match their manifest, holding every sequence of the store.
    manifest = load_manifest(shards)
    assert verify(shards) == []
    assert sum(t["sequences"] for t in manifest["totals"]["h36m"].values()) == len(view)
