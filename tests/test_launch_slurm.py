"""The multi-node launch path of cluster/slurm/pretrain.sbatch, for real on one machine: two simulated nodes,
each with its own `deepspeed --no_ssh --node_rank N` launcher (cluster/launch_pretrain.sh), one CPU rank each,
train a few pretraining steps as one world of two ranks.

Only SLURM itself is stood in for: `scontrol show hostnames` lists two node names and `srun` starts its
command once per node, concurrently, with SLURM_NODEID set, as SLURM does. Everything it starts runs in one
process group that is ended whatever happens.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from launch import run_group
from shards_fakes import make_store

from shards.writer import build
from training.runlog import read_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CLIP = 27  # the tiny preset's frames

# Two node names that both mean this machine: the first is MASTER_ADDR and must resolve.
SCONTROL = """#!/usr/bin/env bash
[[ "$1 $2 $3" == "show hostnames node[1-2]" ]] || { echo "unexpected scontrol $*" >&2; exit 9; }
printf 'localhost\\nnode2\\n'
"""
SRUN = """#!/usr/bin/env bash
while [[ "$1" == -* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_JOB_NUM_NODES; i++)); do
  SLURM_NODEID=$i "$@" > "node$i.log" 2>&1 &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("slurm_shards")
    make_store(root / "store")
    build(str(root / "store"), root / "shards", segment_len=64, clip_len=CLIP, shard_size=30_000, progress=False)
    return root / "shards"


def test_sbatch_two_nodes_train_as_one_world(shards, tmp_path):
    submit = tmp_path / "submit"  # SLURM_SUBMIT_DIR: where the job runs and writes runs/slurm-<id>/
    (submit / "bin").mkdir(parents=True)
    (submit / "cluster").symlink_to(REPO / "cluster")
    for name, text in (("scontrol", SCONTROL), ("srun", SRUN)):
        (submit / "bin" / name).write_text(text)
        (submit / "bin" / name).chmod(0o755)
    out = tmp_path / "run"
    launched = ("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_")  # none from the caller
    env = {k: v for k, v in os.environ.items() if not k.startswith(launched)}
    env |= {
        "PATH": f"{submit / 'bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{env['PATH']}",
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_SUBMIT_DIR": str(submit),
        "RANKS_PER_NODE": "1",
        "MASTER_PORT": str(free_port()),
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    args = [
        "--preset",
        "tiny",
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--no-progress",
        "--set",
        "train.log_every=2",
        "--set",
        "train.checkpoint_every=4",
        "--set",
        "train.warmup_steps=1",
    ]
    code, output = run_group(
        ["bash", str(REPO / "cluster" / "slurm" / "pretrain.sbatch"), *args], cwd=submit, env=env, timeout=300
    )
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(submit.glob("node*.log")))
    assert code == 0, f"{output[-2000:]}\n{logs}"

    assert (submit / "runs" / "slurm-77" / "hostfile").read_text() == "localhost slots=1\nnode2 slots=1\n"
    # Node 1's launcher started global rank 1 (not a second rank 0): one world of two ranks, reading
    # different data, trained to the end and checkpointed.
    node1 = (submit / "node1.log").read_text()
    assert "node_rank=1" in node1 and "dist_world_size=2" in node1
    metrics = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in metrics] == [1, 2, 4]
    for record in metrics:
        rank0, rank1 = record["data_checksum"]
        assert rank0 != rank1
    assert (out / "checkpoints" / "latest").is_file()
