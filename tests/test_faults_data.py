"""Real faults in the data stages (issues 16 and 20): SIGKILLed Ray workers and drivers of ``python -m ingest``
and ``python -m shards build``, and writes the kernel refuses (a full disk), on small generated inputs.

Every outcome is compared with a clean run's: the store array for array, the shard folder file for file.
How each fault is made:

* a Ray worker during an ingest: :class:`faults_data_helpers.KilledOnceReader` blocks in ``read`` and writes
  its process id, which the test SIGKILLs;
* a Ray worker during a shard build: :class:`faults_data_helpers.PartGate` turns a store part's ``zarr.json``
  into a named pipe, so the shard task reading that part blocks in a real read of the store; the test finds
  it in /proc and SIGKILLs it;
* a driver: the command runs in its own session with its own local Ray and is SIGKILLed, Ray with it, at a
  chosen point (checked again with everything SIGSTOPped, so the point holds when the kill lands);
* a full disk: RLIMIT_FSIZE on a subprocess, so the kernel fails the write past the limit with EFBIG as a
  full disk fails it with ENOSPC (the stages handle both alike: ``ingest.atomic.NO_ROOM``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faults_data_helpers
import numpy as np
import pytest
from faults_data_helpers import (
    REPO,
    WAIT_S,
    Driver,
    KilledOnceReader,
    PartGate,
    no_room_message,
    run_limited,
    wait_for,
)
from launch import launcher_env, run_group
from shards_fakes import make_sequence

from ingest.h36m import H36MReader
from ingest.job import run_ingest
from ingest.samples import write_samples
from ingest.store import MotionStore
from shards.manifest import load_manifest
from shards.writer import build, plan_shards

pytestmark = pytest.mark.faults

SUBJECTS = ("S1", "S5")  # of the sample data: 8 source files, one store part each
SEGMENT, CLIP, SHARD_SIZE = 20, 9, 30_000
BUILD_ARGS = ["--segment-len", str(SEGMENT), "--clip-len", str(CLIP), "--shard-size", str(SHARD_SIZE)]
# Frames of the sequences of the shard store, one part each; the short ones fit one segment.
LENGTHS = [12, 47, 18, 63, 25, 9, 38, 15, 52, 30]


# -- inputs and clean runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, ray_local) -> tuple[Path, Path]:
    """(Human3.6M sample data root, a store converted from it without faults)."""
    root = tmp_path_factory.mktemp("ingest")
    write_samples(root / "data", ["h36m"])
    summary = run_ingest(H36MReader(subjects=SUBJECTS), root / "data" / "h36m", str(root / "clean"), progress=False)
    assert summary.failed == [] and summary.converted == 8
    return root / "data" / "h36m", root / "clean"


@pytest.fixture(scope="module")
def shard_store(tmp_path_factory, ray_local) -> tuple[Path, Path, str]:
    """(store of one part per sequence, its shards built without faults, the part to gate): a sequence of one
    segment, so exactly one shard task reads that part, in the last shard with one."""
    root = tmp_path_factory.mktemp("shards")
    store = MotionStore.open(str(root / "store"))
    rng = np.random.default_rng(7)
    for i, n in enumerate(LENGTHS):
        seq = make_sequence("h36m", "train", i, n, rng, with_valid=False)
        store.write_part("h36m", seq.meta["id"], [seq])
    store.write_index("h36m")
    build(store.url, root / "clean", segment_len=SEGMENT, clip_len=CLIP, shard_size=SHARD_SIZE, progress=False)
    plans = plan_shards(store, "h36m", SEGMENT, CLIP, SHARD_SIZE, 4)
    victim = [seq for plan in plans for seq, segments in plan.sequences if len(segments) == 1][-1]
    return root / "store", root / "clean", victim


def ray_address(ray: object) -> str:
    """The GCS address of the session's Ray, for drivers run as subprocesses."""
    return ray.get_runtime_context().gcs_address


# -- comparisons ---------------------------------------------------------------------------------------------


def assert_same_store(want: Path, got: Path, dataset: str = "h36m") -> None:
    """The store at ``got`` holds what the one at ``want`` holds: the same parts with equal arrays (pose3d,
    pose2d, offsets) and attributes (sequence metadata, source, checksum), the same index, nothing left in
    ``tmp/``."""
    a, b = MotionStore.open(str(want)), MotionStore.open(str(got))
    assert b.part_names(dataset) == a.part_names(dataset)
    for part in a.part_names(dataset):
        ga, gb = a.open_part(dataset, part), b.open_part(dataset, part)
        assert dict(gb.attrs) == dict(ga.attrs), part
        assert sorted(gb.array_keys()) == sorted(ga.array_keys()) == ["offsets", "pose2d", "pose3d"]
        for key in ga.array_keys():
            np.testing.assert_array_equal(gb[key][:], ga[key][:], err_msg=f"{part}/{key}")
    assert b.load_index(dataset) == a.load_index(dataset)
    assert (got / dataset / "index.json").is_file()
    assert tmp_entries(got) == []


def tmp_entries(store: Path, dataset: str = "h36m") -> list[str]:
    """Half-written parts in the store's ``tmp/``."""
    tmp = store / dataset / "tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def done_parts(store: Path, dataset: str = "h36m") -> list[str]:
    parts = store / dataset / "parts"
    return sorted(os.listdir(parts)) if parts.is_dir() else []


def file_ids(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every file under ``folder``: a file rewritten or replaced changes them."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, hidden ones included, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def summary_of(output: str) -> dict:
    """The JSON summary ``python -m ingest`` prints on stderr."""
    return json.loads(next(line for line in output.splitlines() if line.startswith('{"dataset"')))


# -- SIGKILLed Ray workers -----------------------------------------------------------------------------------


def kill_blocked_reader(gate: Path) -> int:
    """SIGKILL the worker that :class:`KilledOnceReader` holds (it writes ``gate/pid``); returns its id."""
    pid = int(wait_for(lambda: (gate / "pid").is_file() and (gate / "pid").read_text(), "a worker in read()"))
    os.kill(pid, signal.SIGKILL)
    return pid


def test_ingest_worker_killed_mid_file_is_retried(ingested, ray_local, tmp_path):
    src, clean = ingested
    ray_local.cloudpickle.register_pickle_by_value(faults_data_helpers)  # workers need not import the tests
    victim = H36MReader(subjects=SUBJECTS).sources(src)[-1]
    gate = tmp_path / "gate"
    gate.mkdir()
    reader = KilledOnceReader(subjects=SUBJECTS, gate=str(gate), victim=str(victim))
    with ThreadPoolExecutor(1) as pool:
        killing = pool.submit(kill_blocked_reader, gate)
        summary = run_ingest(reader, src, str(tmp_path / "store"), progress=False)
        killed = killing.result(timeout=WAIT_S)
    attempts = [int(pid) for pid in (gate / "attempts").read_text().split()]
    assert attempts[0] == killed and len(attempts) == 2 and attempts[1] != killed  # Ray ran it again elsewhere
    assert summary.failed == [] and summary.converted == summary.files == 8
    assert_same_store(clean, tmp_path / "store")


def kill_gated_reader(gate: PartGate, out: Path) -> list[Path]:
    """SIGKILL the shard task blocked on ``gate`` once the real part is back; returns the half-written shard
    files in the staging folder at that moment. On failure, releases the gate so the build cannot hang."""
    try:
        pid = wait_for(gate.readers, "a shard task reading the gated part")[0]
        half = sorted(out.glob(".building-*/h36m/.*.tmp-*"))
        gate.restore()
        os.kill(pid, signal.SIGKILL)
        return half
    except BaseException:
        gate.close()
        raise


def test_shard_worker_killed_mid_shard_is_retried_without_half_shards(shard_store, ray_local, tmp_path):
    store, clean, victim = shard_store
    out = tmp_path / "shards"
    with PartGate(store / "h36m" / "parts" / victim, tmp_path / "zarr.json") as gate, ThreadPoolExecutor(1) as pool:
        killing = pool.submit(kill_gated_reader, gate, out)
        build(str(store), out, segment_len=SEGMENT, clip_len=CLIP, shard_size=SHARD_SIZE, progress=False)
        half = killing.result(timeout=WAIT_S)
    assert half, "the killed task had no shard open: nothing half-written to leave behind"
    assert tree(out) == tree(clean)  # same shards, byte for byte, same manifest; no stray file


# -- SIGKILLed drivers ---------------------------------------------------------------------------------------


def test_ingest_driver_killed_midway_rerun_keeps_finished_parts(ingested, ray_local, tmp_path):
    src, clean = ingested
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "ingest", "h36m", str(src), "--store", str(store), "--subjects", *SUBJECTS]
    with Driver([*cmd, "--num-cpus", "2", "--no-progress"], tmp_path / "driver.log") as driver:
        driver.kill_when(lambda: done_parts(store) and tmp_entries(store), "a part done and another half-written")
    done, half = done_parts(store), tmp_entries(store)
    assert 0 < len(done) < 8 and half, driver.output()
    before = {part: file_ids(store / "h36m" / "parts" / part) for part in done}

    # Meanwhile a reader sees the finished parts only, whole.
    view, want = MotionStore.open(str(store))["h36m"], MotionStore.open(str(clean))
    finished = [meta["id"] for part in done for meta in want.open_part("h36m", part).attrs["sequences"]]
    assert sorted(view.ids) == sorted(finished)
    want = want["h36m"]
    for seq_id in view.ids:
        np.testing.assert_array_equal(view[seq_id].pose3d, want[seq_id].pose3d)

    rc, output = run_group(
        [*cmd, "--address", ray_address(ray_local), "--no-progress"], cwd=REPO, env=launcher_env(), timeout=2 * WAIT_S
    )
    assert rc == 0, output
    summary = summary_of(output)
    assert (summary["skipped"], summary["converted"]) == (len(done), 8 - len(done))
    assert {part: file_ids(store / "h36m" / "parts" / part) for part in done} == before  # not redone
    assert_same_store(clean, store)  # and the half-written part is gone


def test_shard_driver_killed_midway_publishes_nothing_and_rerun_builds_it_all(shard_store, ray_local, tmp_path):
    store, clean, victim = shard_store
    out = tmp_path / "shards"
    cmd = [sys.executable, "-m", "shards", "build", "--store", str(store), "--out", str(out), *BUILD_ARGS]
    with (
        PartGate(store / "h36m" / "parts" / victim, tmp_path / "zarr.json") as gate,
        Driver([*cmd, "--num-cpus", "2"], tmp_path / "driver.log") as driver,
    ):
        driver.kill_when(
            lambda: gate.readers() and list(out.glob(".building-*/h36m/*.tar")),
            "a shard written and another being written",
        )
    # Killed midway: the written shards wait, hidden, in the staging folder; nothing is published.
    assert list(out.glob(".building-*/h36m/*.tar")), driver.output()
    assert list(out.glob("*/*.tar")) == [] and not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        load_manifest(out)

    rc, output = run_group(
        [*cmd, "--address", ray_address(ray_local)], cwd=REPO, env=launcher_env(), timeout=2 * WAIT_S
    )
    assert rc == 0, output
    assert tree(out) == tree(clean)  # the staging folder of the killed build is gone too


# -- a full disk ---------------------------------------------------------------------------------------------

CONVERT = """
import json, sys
from pathlib import Path
from ingest.h36m import H36MReader
from ingest.job import convert_file
src, path, store = map(Path, sys.argv[1:])
reader = H36MReader(subjects=("S1", "S5"))
print(json.dumps(convert_file(reader, path, reader.part_name(src, path), str(store), None, False)))
"""

WRITE_SHARD = """
import sys
from ingest.store import MotionStore
from shards.writer import plan_shards, write_shard
store, out, segment, clip, size = sys.argv[1:]
plan = plan_shards(MotionStore.open(store), "h36m", int(segment), int(clip), int(size), 4)[0]
write_shard(store, None, out, plan, "float32", (int(clip),))
"""


def test_full_disk_during_a_part_write_names_the_part_and_leaves_no_part(ingested, tmp_path):
    src, _ = ingested
    path = H36MReader(subjects=SUBJECTS).sources(src)[0]
    store = tmp_path / "store"
    rc, output = run_limited([sys.executable, "-c", CONVERT, str(src), str(path), str(store)], fsize=16 << 10)
    assert rc == 0, output
    result = json.loads(output.splitlines()[-1])
    part = store / "h36m" / "parts" / H36MReader().part_name(src, path)
    assert result["source"] == str(path) and no_room_message(part) in result["error"]
    assert done_parts(store) == [] and tmp_entries(store) == []


def test_full_disk_during_a_shard_write_names_the_shard_and_leaves_no_file(shard_store, tmp_path):
    store, _, _ = shard_store
    out = tmp_path / "shards"
    args = [str(store), str(out), str(SEGMENT), str(CLIP), str(SHARD_SIZE)]
    rc, output = run_limited([sys.executable, "-c", WRITE_SHARD, *args], fsize=8 << 10)
    assert rc == 1 and f"OSError: {no_room_message(out / 'h36m' / 'train-000000.tar')}" in output, output
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_full_disk_for_the_manifest_keeps_the_old_shards_and_manifest(shard_store, ray_local, tmp_path):
    store, clean, _ = shard_store
    out = tmp_path / "shards"
    shutil.copytree(clean, out)
    cmd = [sys.executable, "-m", "shards", "build", "--store", str(store), "--out", str(out), *BUILD_ARGS]
    cmd += ["--dtype", "float16", "--overwrite", "--address", ray_address(ray_local)]  # other shards than `clean`
    rc, output = run_limited(cmd, fsize=(clean / "manifest.json").stat().st_size // 2)
    assert rc == 2 and f"python -m shards build: error: {no_room_message(out / 'manifest.json')}" in output, output
    assert tree(out) == tree(clean)
