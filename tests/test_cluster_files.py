"""The cluster/ files: shell syntax, the Ray cluster config against Ray's own schema, the hostfile and the
launch commands against DeepSpeed's own parsers (the launch itself is tested in test_launch_*.py)."""

from __future__ import annotations

import copy
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from launch import launcher_env

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
SCRIPTS = sorted([*CLUSTER.rglob("*.sh"), *CLUSTER.rglob("*.sbatch")])


@pytest.fixture(autouse=True)
def cpu_accelerator(monkeypatch):
    """DeepSpeed's launcher modules pick an accelerator when used; there is no GPU here."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")


def test_the_scripts_exist():
    names = {p.relative_to(CLUSTER).as_posix() for p in SCRIPTS}
    assert {"ray/submit_ingest.sh", "launch_pretrain.sh", "slurm/pretrain.sbatch"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_script_is_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


def test_cluster_yaml_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray" / "cluster.yaml").read_text())
    provider = config["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and provider["worker_ips"]
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does first: fill defaults, node types
    validate_config(prepared)  # raises jsonschema.ValidationError on any unknown or mistyped key
    # The local provider starts exactly the listed workers.
    node_type = prepared["available_node_types"][prepared["head_node_type"]]
    assert node_type["min_workers"] == node_type["max_workers"] == len(provider["worker_ips"])


def test_cluster_yaml_installs_the_project_on_every_node():
    config = yaml.safe_load((CLUSTER / "ray" / "cluster.yaml").read_text())
    remote = next(r for r, local in config["file_mounts"].items() if local == ".")
    setup = "\n".join(config["setup_commands"])
    venv = f"{remote}/.venv"
    assert f"-m venv {venv}" in setup
    for step in ("pip install torch==", "pip install --no-build-isolation deepspeed", f"-e {remote}"):
        assert step in setup, step
    # torch before deepspeed (built against it) before the project.
    assert setup.index("torch==") < setup.index("deepspeed") < setup.index(f"-e {remote}")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = config[key][-1]
        assert f"source {venv}/bin/activate" in start and "ray start" in start
    assert {".venv", ".git"} <= set(config["rsync_exclude"])


def parse_hostfile(path: Path) -> dict[str, int]:
    """Second reading of a hostfile, independent of DeepSpeed's: "host slots=N" outside comments."""
    hosts = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            host, slots = line.split()
            hosts[host] = int(slots.removeprefix("slots="))
    return hosts


def test_hostfile_example_parses_with_deepspeed():
    from deepspeed.launcher.runner import fetch_hostfile

    path = CLUSTER / "deepspeed" / "hostfile.example"
    pool = fetch_hostfile(str(path))
    assert pool is not None and len(pool) >= 2
    assert dict(pool) == parse_hostfile(path)
    assert all(slots > 0 for slots in pool.values())


def deepspeed_args(command_line: str):
    """Parse a printed `deepspeed ...` command with DeepSpeed's own launcher parser."""
    from deepspeed.launcher.runner import parse_args

    argv = shlex.split(command_line)
    assert argv[0] == "deepspeed", command_line
    return parse_args(argv[1:])


def run_script(script: Path, env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args],
        env=launcher_env(**env),
        cwd=cwd or CLUSTER.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_launch_pretrain_ssh_mode(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nalpha slots=2\n\nbeta slots=3\n")
    out = run_script(
        CLUSTER / "launch_pretrain.sh",
        {"DRY_RUN": "1", "HOSTFILE": str(hostfile)},
        "--config",
        "my config.json",
        "--steps",
        "5",
    )
    assert out.returncode == 0, out.stderr
    args = deepspeed_args(out.stdout)
    assert args.hostfile == str(hostfile)
    assert args.master_addr == "alpha"  # the hostfile's first host by default
    assert args.master_port == 29500
    assert args.launcher == "pdsh" and not args.no_ssh
    assert args.module and args.no_local_rank
    assert args.user_script == "pretrain"
    assert args.user_args == ["--config", "my config.json", "--steps", "5"]


def test_launch_pretrain_per_node_mode(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("alpha slots=2\nbeta slots=2\n")
    env = {
        "DRY_RUN": "1",
        "HOSTFILE": str(hostfile),
        "NODE_RANK": "1",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "31000",
    }
    out = run_script(CLUSTER / "launch_pretrain.sh", env, "--config", "c.json")
    assert out.returncode == 0, out.stderr
    args = deepspeed_args(out.stdout)
    assert args.no_ssh and args.node_rank == 1
    assert (args.master_addr, args.master_port) == ("10.0.0.1", 31000)


def test_launch_pretrain_refuses_a_missing_hostfile(tmp_path):
    out = run_script(CLUSTER / "launch_pretrain.sh", {"HOSTFILE": str(tmp_path / "absent")}, "--config", "c")
    assert out.returncode == 2
    assert "absent" in out.stderr


def fake_slurm_bin(folder: Path) -> Path:
    """`scontrol show hostnames` for a two-node list and an `srun` that runs its command once per node with
    SLURM_NODEID set, as SLURM does (its options are skipped)."""
    folder.mkdir()
    (folder / "scontrol").write_text(
        '#!/bin/sh\n[ "$1 $2 $3" = "show hostnames gpu[07-08]" ] || exit 9\nprintf \'gpu07\\ngpu08\\n\'\n'
    )
    (folder / "srun").write_text(
        '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\n'
        'i=0\nwhile [ $i -lt "$SLURM_JOB_NUM_NODES" ]; do\n'
        '  SLURM_NODEID=$i "$@" || exit $?\n  i=$((i + 1))\ndone\n'
    )
    for name in ("scontrol", "srun"):
        (folder / name).chmod(0o755)
    return folder


def test_sbatch_starts_one_launcher_per_node(tmp_path):
    submit = tmp_path / "submit"
    submit.mkdir()
    (submit / "cluster").symlink_to(CLUSTER)
    bin_dir = fake_slurm_bin(tmp_path / "bin")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DRY_RUN": "1",
        "SLURM_JOB_ID": "4321",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_SUBMIT_DIR": str(submit),
        "SLURM_GPUS_ON_NODE": "4",
    }
    out = run_script(CLUSTER / "slurm" / "pretrain.sbatch", env, "--config", "c.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    launches = [deepspeed_args(line) for line in out.stdout.splitlines() if line.startswith("deepspeed ")]
    assert [a.node_rank for a in launches] == [0, 1]
    for args in launches:
        assert args.no_ssh and args.module and args.user_script == "pretrain"
        assert args.user_args == ["--config", "c.json"]
        assert (args.master_addr, args.master_port) == ("gpu07", 20000 + 4321 % 20000)
        from deepspeed.launcher.runner import fetch_hostfile

        assert dict(fetch_hostfile(str(submit / args.hostfile))) == {"gpu07": 4, "gpu08": 4}


def test_sbatch_refuses_to_run_outside_slurm():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    out = subprocess.run(
        ["bash", str(CLUSTER / "slurm" / "pretrain.sbatch")], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and "sbatch" in out.stderr


def recording_ray_bin(folder: Path, log: Path) -> Path:
    """A `ray` that records each command line (one shell-quoted line per call) instead of submitting."""
    folder.mkdir()
    (folder / "ray").write_text(
        f"#!/usr/bin/env bash\nprintf '%q ' \"$@\" >> {shlex.quote(str(log))}\necho >> {shlex.quote(str(log))}\n"
    )
    (folder / "ray").chmod(0o755)
    return folder


def test_submit_ingest_commands_parse_with_the_real_clis(tmp_path):
    from ingest.__main__ import build_parser as ingest_parser
    from shards.__main__ import build_parser as shards_parser

    data = tmp_path / "data"
    for folder in ("h36m", "amass"):  # no mpi_inf_3dhp: skipped with a message
        (data / folder).mkdir(parents=True)
    log = tmp_path / "calls.txt"
    env = {
        "PATH": f"{recording_ray_bin(tmp_path / 'bin', log)}:{os.environ['PATH']}",
        "RAY_ADDRESS": "http://head:8265",
        "DATA": str(data),
        "STORE": "s3://bucket/store",
        "SHARDS": "/shared/shards",
        "INGEST_ARGS": "--overwrite",
    }
    out = run_script(CLUSTER / "ray" / "submit_ingest.sh", env)
    assert out.returncode == 0, out.stderr
    assert "skipping mpi-inf-3dhp" in out.stderr
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    assert len(calls) == 3
    for call in calls:
        assert call[:6] == ["job", "submit", "--address", "http://head:8265", "--working-dir", "."]
        assert call[6:9] == ["--", "python", "-m"]
    h36m, amass = (ingest_parser().parse_args(call[10:]) for call in calls[:2])
    assert [calls[0][9], h36m.command, str(h36m.src), h36m.store] == [
        "ingest",
        "h36m",
        str(data / "h36m"),
        "s3://bucket/store",
    ]
    assert h36m.overwrite and amass.overwrite and h36m.no_progress
    assert (amass.command, amass.body_models) == ("amass", data / "body_models")
    shards = shards_parser().parse_args(calls[2][10:])
    assert (calls[2][9], shards.command, shards.store, shards.out) == (
        "shards",
        "build",
        "s3://bucket/store",
        "/shared/shards",
    )


def test_submit_ingest_rejects_an_unknown_dataset(tmp_path):
    env = {"RAY_ADDRESS": "http://head:8265", "DATA": str(tmp_path), "STORE": str(tmp_path / "store")}
    out = run_script(CLUSTER / "ray" / "submit_ingest.sh", env, "h36")
    assert out.returncode == 2 and "unknown dataset 'h36'" in out.stderr
