"""The pretraining trainer: config loading, a short tiny-preset run, resume, export, and the DeepSpeed launcher
with two CPU ranks."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from launch import launcher_env, run_group
from shards_fakes import make_store
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_untrusted import Payload

from pretrain.config import Config, load_config
from pretrain.export import load_pretrained
from pretrain.train import build_loader, train
from shards.writer import build
from training.engine import deepspeed_checkpoint_types
from training.runlog import read_metrics
from training.settings import build as build_config

REPO = Path(__file__).resolve().parents[1]
CLIP = 27  # the tiny preset's frames


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("pretrain_shards")
    make_store(root / "store")
    build(str(root / "store"), root / "shards", segment_len=64, clip_len=CLIP, shard_size=30_000, progress=False)
    return root / "shards"


def tiny_config(shards: Path, out: Path, **train) -> Config:
    raw = {
        "preset": "tiny",
        "data": {"shards": str(shards), "mixture": "large", "batch_size": 8},
        "train": {
            "out": str(out),
            "steps": 12,
            "lr": 3e-3,
            "warmup_steps": 2,
            "log_every": 2,
            "checkpoint_every": 4,
            "threads": 1,
            **train,
        },
    }
    return build_config(Config, raw)


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny\nmodel: {joints: 16}\ntrain: {steps: 7, betas: [0.8, 0.9]}\ndata: {mixture: base}\n")
    cfg = load_config(path, ["train.lr=1e-4", "mask.mode=tube", "data.datasets=[h36m]", "data.mixture=null"])
    assert (cfg.model.channels, cfg.model.joints, cfg.model.frames) == (32, 16, CLIP)  # tiny, joints overridden
    assert cfg.train.steps == 7 and cfg.train.lr == 1e-4 and cfg.train.betas == [0.8, 0.9]
    assert cfg.mask.mode == "tube" and cfg.data.datasets == ["h36m"] and cfg.data.mixture is None
    assert cfg.objective.lambda_2d == 2.0 and cfg.objective.lambda_3d == 3.0
    assert load_config(None, ["preset=mpm-s"]).model.layers == 3
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps(cfg.to_dict()))
    assert load_config(json_path) == cfg  # a saved config.json round-trips
    with pytest.raises(ValueError, match=r"config: train: unknown key\(s\) \['stepz'\]"):
        load_config(None, ["train.stepz=3"])
    with pytest.raises(ValueError, match=r"config: train\.steps: expected int"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(ValueError, match="mask.mode"):
        load_config(None, ["mask.mode=everything"])
    with pytest.raises(ValueError, match="must be preset or one of"):
        load_config(None, ["optimizer.lr=1"])
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        load_config(tmp_path / "bad.yaml")


def test_short_run_learns_resumes_and_exports(shards, tmp_path):
    full = train(tiny_config(shards, tmp_path / "full"), progress=False)
    records = read_metrics(full["metrics"])
    assert [r["step"] for r in records] == [1, 2, 4, 6, 8, 10, 12]  # the first step, then every log_every
    assert records[-1]["loss"] < 0.8 * records[0]["loss"]  # the loss falls
    assert all(r["samples_per_s"] > 0 and r["lr"] > 0 for r in records)
    assert Path(full["curve"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = EventAccumulator(str(tmp_path / "full" / "monitor" / "tensorboard"))  # the shipped JSON's TensorBoard
    board.Reload()
    assert [(e.step, e.value) for e in board.Scalars("pretrain/loss")] == [
        (r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in records
    ]
    assert (Path(full["checkpoints"]) / "latest").read_text().strip() == "step00000012"

    # a run stopped after 6 steps (last checkpoint at step 4, so steps 5-6 are redone) and resumed
    part = train(tiny_config(shards, tmp_path / "part", stop_after=6, checkpoint_every=4), progress=False)
    assert part["steps"] == 6
    (tmp_path / "part" / "checkpoints" / "latest").write_text("step00000004")  # "killed" before step 6's save
    resumed = train(tiny_config(shards, tmp_path / "part"), resume=True, progress=False)
    again = read_metrics(resumed["metrics"])
    assert [r["step"] for r in again] == [1, 2, 4, 6, 8, 10, 12]  # every step once
    for a, b in zip(records, again, strict=True):
        assert a["data_checksum"] == b["data_checksum"]  # the same data order
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)  # and the same masks and dropout

    model = load_pretrained(full["export"])
    state = torch.load(full["export"], weights_only=False)
    assert state["config"]["channels"] == 32 and all(v.dtype != torch.bfloat16 for v in state["state_dict"].values())
    from_ckpt = load_pretrained(full["checkpoints"])
    for (k, v), w in zip(model.state_dict().items(), from_ckpt.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    x = torch.randn(2, CLIP, 17, 2)
    assert model.encode(x).shape == (2, CLIP, 32)
    with pytest.raises(FileNotFoundError, match="no 'latest'"):
        load_pretrained(tmp_path)


def test_cpu_bf16_runs_every_pass_in_bf16_including_the_lift(shards, tmp_path, monkeypatch):
    """With the shipped ``cpu_bf16`` DeepSpeed config the masked passes (through ``engine.forward``) and the
    lifting term's own pass (``engine.lift``, which bypasses it) compute in bf16; the export stays fp32."""
    import pretrain.train as pretrain_train

    seen = []

    class Watched(pretrain_train.MPM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            seen.append(("forward", out[0].dtype))
            return out

        def lift(self, pose2d, hidden=None):
            out = super().lift(pose2d, hidden)
            seen.append(("lift", out.dtype))
            return out

    monkeypatch.setattr(pretrain_train, "MPM", Watched)
    cfg = tiny_config(shards, tmp_path / "bf16", steps=3, deepspeed_config="cpu_bf16")
    cfg.objective.lambda_lift = 1.0
    summary = train(cfg, progress=False)
    assert {name for name, _ in seen} == {"forward", "lift"} and {dtype for _, dtype in seen} == {torch.bfloat16}
    state = torch.load(summary["export"], weights_only=True)
    assert {v.dtype for v in state["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    assert all(r["loss"] == r["loss"] for r in read_metrics(summary["metrics"]))  # finite, not NaN


def test_zero1_export_gathers_the_master_weights(shards, tmp_path):
    ds = tmp_path / "zero1.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 1}, "zero_allow_untested_optimizer": True}))
    run = train(tiny_config(shards, tmp_path / "z1", steps=3, deepspeed_config=str(ds)), progress=False)
    tag = (Path(run["checkpoints"]) / "latest").read_text().strip()
    assert any((Path(run["checkpoints"]) / tag).glob("zero_pp_rank_0_*optim_states.pt"))
    module = torch.load(Path(run["checkpoints"]) / tag / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    exported = torch.load(run["export"], weights_only=False)["state_dict"]
    assert exported.keys() == module.keys()
    for k in module:  # fp32 run: the gathered master weights are the module's weights
        assert torch.equal(exported[k], module[k].float() if module[k].is_floating_point() else module[k]), k
    from_ckpt = load_pretrained(run["checkpoints"]).state_dict()
    assert all(torch.equal(from_ckpt[k], exported[k].to(from_ckpt[k].dtype)) for k in from_ckpt)


def test_mixtures_file_lets_the_config_name_a_user_mixture(shards, tmp_path):
    """data.mixtures_file reaches the loader: a mixture defined only there is streamed, and unknown without it."""
    mixtures = tmp_path / "mixtures.json"
    mixtures.write_text(json.dumps({"amass-only": {"amass": 1.0}}))
    cfg = tiny_config(shards, tmp_path / "run")
    cfg.data.mixture = "amass-only"
    with pytest.raises(ValueError, match="unknown mixture 'amass-only'"):
        build_loader(cfg)
    cfg.data.mixtures_file = str(mixtures)
    assert set(build_loader(cfg).windows_per_dataset) == {"amass"}


def test_clip_longer_than_model_is_rejected(shards, tmp_path):
    cfg = tiny_config(shards, tmp_path)
    cfg.data.clip_len = CLIP + 1
    with pytest.raises(ValueError, match="exceeds model.frames"):
        train(cfg, progress=False)


@pytest.mark.slow
def test_deepspeed_launcher_two_cpu_ranks(shards, tmp_path):
    """``deepspeed --num_gpus 2 --module pretrain`` on CPU: two ranks read different data; a run resumed
    from a mid-run checkpoint repeats the same steps with the same data and losses."""
    out = tmp_path / "run"
    env = launcher_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    master_port = str(29500 + os.getpid() % 1000)
    deepspeed = Path(sys.executable).with_name("deepspeed")
    cmd = [
        str(deepspeed),
        "--num_gpus",
        "2",
        "--master_port",
        master_port,
        "--module",
        "pretrain",
        "--preset",
        "tiny",
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--steps",
        "8",
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
        "train.warmup_steps=2",
    ]

    def launch(*extra: str) -> None:
        code, output = run_group([*cmd, *extra], cwd=REPO, env=env, timeout=240)
        assert code == 0, output[-3000:]

    launch()
    first = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in first] == [1, 2, 4, 6, 8]
    assert all(len(r["data_checksum"]) == 2 and r["data_checksum"][0] != r["data_checksum"][1] for r in first)
    assert first[-1]["loss"] < first[0]["loss"]

    shutil.copy(out / "metrics.jsonl", tmp_path / "first.jsonl")
    (out / "checkpoints" / "latest").write_text("step00000004")  # as if stopped before step 8's save
    launch("--resume")
    second = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in second] == [1, 2, 4, 6, 8]
    for a, b in zip(first, second, strict=True):
        assert a["data_checksum"] == b["data_checksum"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.mark.parametrize("zero", [0, 1])
def test_resume_refuses_a_checkpoint_that_would_run_code(shards, tmp_path, zero):
    """DeepSpeed unpickles its checkpoint files with the full unpickler: every file is read as data first, so a
    ZeRO run's optimizer states (which hold a few DeepSpeed classes) still resume, while a tampered
    model-states file is refused, naming it, before DeepSpeed opens it, and the code in it never runs."""
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": zero}, "zero_allow_untested_optimizer": True}))
    run = dict(checkpoint_every=4, deepspeed_config=str(ds))
    train(tiny_config(shards, tmp_path / "run", stop_after=4, **run), progress=False)
    tag = tmp_path / "run" / "checkpoints" / "step00000004"
    assert len(list(tag.glob("*optim_states.pt"))) == zero  # ZeRO keeps its optimizer states apart
    shutil.copytree(tmp_path / "run", tmp_path / "tampered")
    assert train(tiny_config(shards, tmp_path / "run", **run), resume=True, progress=False)["steps"] == 12
    states = tmp_path / "tampered" / "checkpoints" / "step00000004" / "mp_rank_00_model_states.pt"
    with torch.serialization.safe_globals(deepspeed_checkpoint_types()):
        blob = torch.load(states, weights_only=True)
    marker = tmp_path / "ran"
    torch.save({**blob, "client": Payload(marker)}, states)
    with pytest.raises(ValueError, match=r"step00000004/mp_rank_00_model_states\.pt: not loaded.*never as code"):
        train(tiny_config(shards, tmp_path / "tampered", **run), resume=True, progress=False)
    assert not marker.exists()
