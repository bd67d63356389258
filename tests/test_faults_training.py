"""Trainer faults for real (issue 16; issue 20 item 5): trainer processes (``python -m pretrain`` / ``python -m
finetune`` on CPU, each in its own session) SIGKILLed at a seeded random moment and inside a checkpoint save,
then resumed; two DeepSpeed ranks with uneven data; a checkpoint written past a file size limit (a full disk).

A resumed run must end with the per-step records (losses, learning rate, epoch, and pretraining's per-rank data
checksums) of an uninterrupted run with the same seed, exactly: on CPU in fp32 with one thread per process, the
restored model, optimizer, schedule and data position and the per-step seeds leave nothing to differ.
``POSEMILL_FAULT_SEED`` changes the random kill moments (default 16).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from finetune_fakes import make_sequence
from launch import launcher_env, run_group
from shards_fakes import make_store

from ingest.store import MotionStore
from shards.writer import build
from training.engine import COMPLETE, tag_for
from training.runlog import read_metrics

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("POSEMILL_FAULT_SEED", "16"))
STEPS, EVERY = 24, 4  # optimizer steps of a run, and its checkpoint interval
TIMING = {"samples_per_s", "seconds"}  # the only record fields allowed to differ between runs
RUN_S = 120  # bound on any one trainer process or wait

PRETRAIN = [
    "-m", "pretrain", "--preset", "tiny", "--steps", str(STEPS), "--batch-size", "8", "--threads", "1",
    "--no-progress", "--set", "train.log_every=1", "--set", f"train.checkpoint_every={EVERY}",
    "--set", "train.warmup_steps=2",
]  # fmt: skip
FINETUNE = [
    "-m", "finetune", "--preset", "tiny", "--frames", "9", "--batch-size", "32", "--max-steps", str(STEPS),
    "--log-every", "1", "--threads", "1", "--no-evaluate", "--no-progress",
    "--set", f"train.checkpoint_every={EVERY}",
]  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_local) -> Path:
    """Shards of ``shards_fakes``' store (all three datasets) at clip length 27: pretraining's, and Human3.6M's
    train split for finetuning (fewer than 12 batches of 32 windows of 9 frames an epoch, so a run of 24 steps
    crosses epoch boundaries)."""
    root = tmp_path_factory.mktemp("faults_training")
    make_store(root / "store")
    build(str(root / "store"), root / "shards", segment_len=64, clip_len=27, shard_size=30_000, progress=False)
    return root / "shards"


class Trainer:
    """A command started in a session of its own (its process group: the trainer and anything it starts),
    stdout and stderr in ``log``; :meth:`kill` ends the whole group."""

    def __init__(self, cmd: list[str], log: Path):
        self.cmd, self.log = cmd, log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=launcher_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text()

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float = RUN_S) -> int:
        """The exit status; fails the test, naming the log, when the command runs past ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{' '.join(self.cmd)}: still running after {timeout} s:\n{self.output()[-3000:]}")

    def wait_until(self, condition, what: str, timeout: float = RUN_S) -> None:
        """Poll ``condition`` every half millisecond until true; fails the test when the process ends first or
        ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"exited ({self.proc.returncode}) before {what}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s:\n{self.output()[-3000:]}")
            time.sleep(0.0005)


@pytest.fixture
def spawn(tmp_path):
    """``spawn(args, name)``: a :class:`Trainer` running ``python ARGS`` (log ``tmp_path/name.log``); every one
    started is killed, with its process group, when the test ends."""
    started: list[Trainer] = []

    def start(args: list[str], name: str, prefix: tuple[str, ...] = ()) -> Trainer:
        started.append(Trainer([*prefix, sys.executable, *args], tmp_path / f"{name}.log"))
        return started[-1]

    yield start
    for trainer in started:
        trainer.kill()


def records_written(metrics: Path) -> int:
    """Complete lines of a metrics.jsonl being written (one per step at log_every=1)."""
    try:
        return metrics.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_at_random_step(trainer: Trainer, out: Path, rng: random.Random, low: int, high: int) -> int:
    """SIGKILL ``trainer`` at a random moment of step ``k`` + 1, k drawn from [low, high] (after step k's record
    appears, a random 0-100 ms later); returns k."""
    k = rng.randint(low, high)
    trainer.wait_until(lambda: records_written(out / "metrics.jsonl") >= k, f"step {k}")
    time.sleep(rng.uniform(0.0, 0.1))
    trainer.kill()
    return k


def kill_in_save(trainer: Trainer, ckpt: Path, steps: list[int]) -> str:
    """SIGKILL ``trainer`` inside a checkpoint save: when the tag folder of one of ``steps`` (those without a
    folder yet) appears, the process group is stopped (SIGSTOP) and, if the save's marker is not yet written,
    killed; a save that finished before the stop (a missed window) goes on and the next step is tried. Returns
    the tag killed in."""
    for tag in [ckpt / tag_for(step) for step in steps if not (ckpt / tag_for(step)).exists()]:
        trainer.wait_until(tag.is_dir, f"folder {tag.name}")
        trainer.signal(signal.SIGSTOP)
        if not (tag / COMPLETE).exists():
            trainer.kill()
            return tag.name
        trainer.signal(signal.SIGCONT)
    pytest.fail(f"every save of {steps} finished before the trainer was stopped")


def assert_same_run(got: list[dict], ref: list[dict]) -> None:
    """Every step once, and each record equal to the uninterrupted run's but for timing fields."""
    assert [r["step"] for r in got] == [r["step"] for r in ref] == list(range(1, STEPS + 1))
    for a, b in zip(got, ref, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


def test_pretraining_killed_at_random_and_in_a_save_resumes_as_if_never_stopped(shards, tmp_path, spawn):
    """A: killed at a random step; B: resumed, killed inside the save of step 12 (or a later one); then ``latest``
    is pointed at that unfinished tag, as DeepSpeed's own ``latest`` (written before every rank's files are in)
    can leave it; C: resumed, it names the tag as incomplete, falls back to the checkpoint before it and ends with
    the uninterrupted run's per-step records."""
    ref_out, out = tmp_path / "ref", tmp_path / "run"
    ref = spawn([*PRETRAIN, "--shards", str(shards), "--out", str(ref_out)], "ref")
    run = [*PRETRAIN, "--shards", str(shards), "--out", str(out)]
    rng = random.Random(SEED)

    kill_at_random_step(spawn(run, "a"), out, rng, EVERY + 1, 11)
    assert (out / "checkpoints" / (out / "checkpoints" / "latest").read_text() / COMPLETE).is_file()

    killed = kill_in_save(spawn([*run, "--resume"], "b"), out / "checkpoints", [12, 16, 20])
    before = tag_for(int(killed.removeprefix("step")) - EVERY)
    assert (out / "checkpoints" / "latest").read_text() == before  # moved only by a finished save
    (out / "checkpoints" / "latest").write_text(killed)

    resumed = spawn([*run, "--resume"], "c")
    assert resumed.finish() == 0, resumed.output()[-3000:]
    assert f"{out / 'checkpoints' / killed} (named by 'latest'): incomplete checkpoint, skipped" in resumed.output()
    assert f"resuming from {out / 'checkpoints' / before}" in resumed.output()
    assert ref.finish() == 0, ref.output()[-3000:]
    assert_same_run(read_metrics(out / "metrics.jsonl"), read_metrics(ref_out / "metrics.jsonl"))


def test_finetuning_killed_in_its_first_save_and_at_random_resumes_as_if_never_stopped(shards, tmp_path, spawn):
    """A: killed inside its first checkpoint save (no complete checkpoint yet); B: resumed, it names that tag as
    incomplete and starts over, then is killed at a random step; C: resumed from the last complete checkpoint,
    it ends with the uninterrupted run's per-step records (across an epoch boundary, with dropout)."""
    ref_out, out = tmp_path / "ref", tmp_path / "run"
    ref = spawn([*FINETUNE, "--shards", str(shards), "--out", str(ref_out)], "ref")
    run = [*FINETUNE, "--shards", str(shards), "--out", str(out)]
    rng = random.Random(SEED)

    assert kill_in_save(spawn(run, "a"), out / "checkpoints", [EVERY]) == tag_for(EVERY)
    assert not (out / "checkpoints" / "latest").exists()

    second = spawn([*run, "--resume"], "b")
    second.wait_until(lambda: records_written(out / "metrics.jsonl") >= EVERY + 1, f"step {EVERY + 1}")
    assert f"{out / 'checkpoints' / tag_for(EVERY)}: incomplete checkpoint, skipped" in second.output()
    assert "no complete checkpoint: starting over" in second.output()
    kill_at_random_step(second, out, rng, 10, 18)

    resumed = spawn([*run, "--resume"], "c")
    assert resumed.finish() == 0, resumed.output()[-3000:]
    assert ref.finish() == 0, ref.output()[-3000:]
    records = read_metrics(out / "metrics.jsonl")
    assert len({r["epoch"] for r in records}) > 1  # the resumed stream crossed an epoch boundary
    assert_same_run(records, read_metrics(ref_out / "metrics.jsonl"))


@pytest.fixture(scope="module")
def uneven(tmp_path_factory, ray_local) -> Path:
    """Human3.6M train shards of very different sizes: one of a 700-frame sequence, one of a 20-frame one."""
    root = tmp_path_factory.mktemp("uneven")
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(root / "store"))
    store.write_part("h36m", "train0", [make_sequence(rng, "S1_Walking_1", "S1", "Walking", "train", 700)])
    store.write_part("h36m", "train1", [make_sequence(rng, "S5_Eating_1", "S5", "Eating", "train", 20)])
    build(str(root / "store"), root / "shards", clip_len=9, shard_size=200_000, num_cpus=1, progress=False)
    return root / "shards"


def test_two_ranks_with_uneven_data_finish_the_same_steps(uneven, tmp_path):
    """``deepspeed --num_gpus 2 --module finetune`` (ZeRO-1, CPU): the ranks read one shard each, one holding
    about 35 times the windows of the other, for two epochs; the smaller rank repeats its pass, so both run
    the larger rank's steps, save every checkpoint (each its own ZeRO optimizer file) and exit, within a
    bounded time."""
    manifest = json.loads((uneven / "manifest.json").read_text())
    windows = sorted(r["windows"]["9"] for r in manifest["shards"].values())
    assert len(windows) == 2 and windows[1] > 30 * windows[0]
    epoch = math.ceil(windows[1] / 32)  # batches of the larger rank's pass, the epoch of both
    out = tmp_path / "run"
    zero1 = tmp_path / "zero1.json"
    zero1.write_text(json.dumps({"zero_optimization": {"stage": 1}, "zero_allow_untested_optimizer": True}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", "2", "--master_port", str(port),
        "--module", "finetune", "--shards", str(uneven), "--out", str(out), "--preset", "tiny", "--frames", "9",
        "--batch-size", "32", "--epochs", "2", "--log-every", "1", "--threads", "1", "--no-evaluate",
        "--no-progress", "--deepspeed-config", str(zero1),
    ]  # fmt: skip
    code, output = run_group(cmd, cwd=REPO, env=launcher_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"), timeout=180)
    assert code == 0, output[-3000:]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 2 * epoch + 1))
    assert [r["epoch"] for r in records] == [0] * epoch + [1] * epoch
    for step in (epoch, 2 * epoch):  # a checkpoint at each epoch's end, written by both ranks
        tag = out / "checkpoints" / tag_for(step)
        assert (tag / COMPLETE).is_file()
        assert sorted(p.name for p in tag.glob("zero_pp_rank_*_optim_states.pt")) == [
            f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)
        ]


def test_full_disk_in_a_save_is_a_clear_error_and_never_a_resumable_checkpoint(shards, tmp_path, spawn):
    """Under a 256 KiB file size limit (``ulimit -f``: writes past it fail with EFBIG, as on a full disk) the
    metrics and config are written but the first checkpoint (about 700 KB) is not: the trainer stops with an
    error naming the checkpoint folder, which has no completion marker, and ``latest`` is not written. A
    resume without the limit names it as incomplete, starts over, and repeats the uninterrupted steps."""
    out = tmp_path / "run"
    run = [*PRETRAIN, "--shards", str(shards), "--out", str(out)]
    full = spawn(run, "full", prefix=("bash", "-c", 'ulimit -f 256 && exec "$@"', "bash"))
    assert full.finish() != 0
    tag = out / "checkpoints" / tag_for(EVERY)
    assert f"{tag}: checkpoint not written (" in full.output()
    assert f"It is left incomplete (no {COMPLETE}): --resume will not load it" in full.output()
    assert tag.is_dir() and not (tag / COMPLETE).exists() and not (out / "checkpoints" / "latest").exists()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, EVERY + 1))

    resumed = spawn([*run, "--resume", "--set", "train.stop_after=6"], "resumed")
    assert resumed.finish() == 0, resumed.output()[-3000:]
    assert f"{tag}: incomplete checkpoint, skipped: no {COMPLETE}" in resumed.output()
    assert "no complete checkpoint: starting over" in resumed.output()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, 7))
    assert (out / "checkpoints" / "latest").read_text() == tag_for(6) and (tag / COMPLETE).is_file()
