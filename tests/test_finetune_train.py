"""Finetuning end to end on a generated store and its shards: from scratch, from pretrained weights with
the shared layers frozen, and resuming from the DeepSpeed checkpoint."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_fakes import make_sequence, one_rank_env
from launch import launcher_env, run_group

from finetune.checkpoint import load_lifter
from finetune.config import load_config
from finetune.train import train
from ingest.store import MotionStore
from pretrain.model import MPM, preset
from shards.writer import build


@pytest.fixture(scope="module")
def data(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("ft")
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(root / "store"))
    store.write_part(
        "h36m", "train", [make_sequence(rng, f"S1_Walking_{i}", "S1", "Walking", "train", 120) for i in range(3)]
    )
    store.write_part("h36m", "test", [make_sequence(rng, "S11_Eating_1", "S11", "Eating", "test", 40)])
    build(str(root / "store"), root / "shards", clip_len=9, shard_size=50_000, num_cpus=1, progress=False)
    return root


@pytest.fixture(scope="module")
def single_process():
    with one_rank_env():
        yield


def config(data, out, *overrides):
    """The test run's config: a tiny lifter on the generated data, plus ``section.field=value`` overrides."""
    return load_config(
        None,
        [
            f"eval.store={data / 'store'}",
            f"data.shards={data / 'shards'}",
            f"train.out={out}",
            "model.preset=tiny",
            "model.frames=9",
            "data.batch_size=16",
            "train.log_every=1",
            *overrides,
        ],
    )


def test_from_scratch_trains_exports_and_evaluates(data, tmp_path, single_process, capsys):
    summary = train(config(data, tmp_path / "run", "train.max_steps=4", "data.occlusion_prob=0.5"))
    assert summary["steps"] == 4 and summary["init"] is None
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    lifter, meta = load_lifter(tmp_path / "run")
    assert meta["steps"] == 4 and lifter.frames == 9
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["h36m"]["average"]["frames"] == 40
    assert "Eat" in capsys.readouterr().out


def test_pretrained_frozen_shared_layers_stay_pretrained(data, tmp_path, single_process):
    cfg = preset("tiny", frames=27)
    mpm = MPM(cfg)
    torch.save({"config": {"model": asdict(cfg)}, "state_dict": mpm.state_dict()}, tmp_path / "pre.pt")
    summary = train(
        config(
            data,
            tmp_path / "run",
            f"model.init={tmp_path / 'pre.pt'}",
            "model.freeze_shared=true",
            "train.max_steps=3",
            "evaluate=false",
        )
    )
    assert summary["loaded"] > 0
    lifter, _ = load_lifter(tmp_path / "run")
    for key, value in mpm.shared.state_dict().items():
        torch.testing.assert_close(lifter.shared.state_dict()[key], value)
    assert not torch.equal(lifter.encoder_2d.fc.weight, mpm.encoder_2d.fc.weight)  # trained


def test_resume_continues_from_the_checkpoint(data, tmp_path, single_process):
    train(config(data, tmp_path / "run", "train.max_steps=2", "evaluate=false"))
    summary = train(config(data, tmp_path / "run", "train.max_steps=5", "evaluate=false"), resume=True)
    assert summary["steps"] == 5
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_resume_from_a_checkpoint_on_an_epoch_boundary(data, tmp_path, single_process):
    """Every checkpoint of a run whose epochs are as long as its checkpoint interval falls on an epoch's last
    step; resuming from it starts the next epoch (it used to find the finished epoch empty and stop)."""
    run = ("data.steps_per_epoch=2", "train.checkpoint_every=2", "evaluate=false")
    train(config(data, tmp_path / "run", "train.max_steps=2", *run))
    summary = train(config(data, tmp_path / "run", "train.max_steps=5", *run), resume=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 5 and [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in records] == [0, 0, 1, 1, 2]


def test_learning_rate_decays_once_per_epoch(data, tmp_path, single_process):
    train(
        config(
            data,
            tmp_path / "run",
            "train.max_steps=5",
            "data.steps_per_epoch=2",
            "train.lr=1e-3",
            "train.lr_decay=0.5",
            "evaluate=false",
        )
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # The logged rate is the one for the next step: 0.5 ** (completed steps // 2 steps per epoch).
    assert [r["lr"] for r in records] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert [r["epoch"] for r in records][-1] == 2
    tags = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.is_dir())
    assert tags == ["step00000002", "step00000004", "step00000005"]  # every epoch end and the last step


def test_decay_every_sets_the_schedule_apart_from_the_epoch(data, tmp_path, single_process):
    """``train.decay_every``: the rate falls every 3 optimizer steps while the loader's epoch stays a whole pass."""
    train(
        config(
            data,
            tmp_path / "run",
            "train.max_steps=7",
            "train.decay_every=3",
            "train.lr=1e-3",
            "train.lr_decay=0.5",
            "evaluate=false",
        )
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert {r["epoch"] for r in records} == {0}  # 3 sequences of 120 frames, batch 16: over 7 steps in a pass


def test_cpu_bf16_trains_linear_layers_in_bf16_and_keeps_fp32_weights(data, tmp_path, single_process):
    """The shipped ``cpu_bf16`` DeepSpeed config (named, not a path) runs the lifter's forward under bf16
    autocast: linear layers compute in bf16, the weights and the exported lifter stay fp32, and training
    follows the fp32 run's losses step for step."""
    from finetune import train as ft

    dtypes = set()
    build = ft.build_lifter

    def watched(cfg):
        lifter, meta = build(cfg)
        lifter.shared.spatial.fc1.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
        return lifter, meta

    ft.build_lifter = watched
    try:
        train(config(data, tmp_path / "run", "train.max_steps=6", "train.deepspeed_config=cpu_bf16", "evaluate=false"))
    finally:
        ft.build_lifter = build
    assert dtypes == {torch.bfloat16}
    lifter, _ = load_lifter(tmp_path / "run")
    assert {p.dtype for p in lifter.parameters()} == {torch.float32}
    train(config(data, tmp_path / "fp32", "train.max_steps=6", "evaluate=false"))

    def losses(run):
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    # the same batches and dropout draws (per-step seeds): bf16 follows the fp32 losses to bf16's precision
    assert losses("run") == pytest.approx(losses("fp32"), rel=0.02)


@pytest.mark.slow
def test_deepspeed_launcher_two_cpu_ranks(data, tmp_path):
    """``deepspeed --num_gpus 2 --module finetune`` on CPU: both ranks train, rank 0 exports and evaluates."""
    out = tmp_path / "run"
    env = launcher_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    cmd = [
        str(Path(sys.executable).with_name("deepspeed")),
        "--num_gpus",
        "2",
        "--master_port",
        str(29600 + os.getpid() % 1000),
        "--module",
        "finetune",
        "--store",
        str(data / "store"),
        "--shards",
        str(data / "shards"),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--frames",
        "9",
        "--batch-size",
        "8",
        "--max-steps",
        "4",
        "--log-every",
        "2",
        "--threads",
        "1",
    ]
    code, output = run_group(cmd, cwd=Path(__file__).resolve().parents[1], env=env, timeout=300)
    assert code == 0, output[-3000:]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 4]
    assert json.loads((out / "results.json").read_text())["h36m"]["average"]["frames"] == 40
    assert output.count("Protocol #1 MPJPE") == 1  # only rank 0 evaluates


def test_pretrained_layers_get_their_own_learning_rate():
    from finetune.model import Lifter
    from finetune.train import param_groups

    lifter = Lifter(preset("tiny"), frames=9)
    lifter.freeze("shared")
    groups = {g["name"]: g for g in param_groups(lifter, 2e-3, 0.25)}
    assert groups["pretrained"]["lr"] == pytest.approx(5e-4) and groups["new"]["lr"] == pytest.approx(2e-3)
    named = {id(p): n for n, p in lifter.named_parameters()}
    pretrained = {named[id(p)] for p in groups["pretrained"]["params"]}
    new = {named[id(p)] for p in groups["new"]["params"]}
    # the encoder, the mask token and the 3D decoder (sequence head), not the frozen shared layers; every
    # other trainable parameter is new
    assert pretrained == {
        n
        for n, p in lifter.named_parameters()
        if n.startswith(("encoder_2d.", "mask_token_2d", "seq_head.", "dec_pos_emb"))
    }
    assert new == {n for n, p in lifter.named_parameters() if p.requires_grad} - pretrained
    assert all(n.startswith(("reduce.", "head.")) for n in new)
    opt = torch.optim.Adam(param_groups(lifter, 1e-3, 0.5))
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 1e-3]


def test_missing_store_is_refused_before_training(data, tmp_path, single_process):
    with pytest.raises(ValueError, match=r"nonesuch: no h36m or mpi_inf_3dhp dataset to evaluate on"):
        train(config(data, tmp_path / "run", f"eval.store={tmp_path / 'nonesuch'}"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_network_fields_size_the_scratch_lifter_and_are_refused_with_init():
    """A from-scratch lifter takes the preset's sizes overridden by the model section's network fields (as a
    pretraining config's model section does); with model.init the checkpoint's sizes rule and a field is refused."""
    cfg = load_config(None, ["model.preset=lite", "model.frames=9", "model.channels=48", "model.dropout=0.0"])
    net = cfg.model.network()
    assert (net.channels, net.hidden, net.layers, net.dropout, net.frames) == (48, 128, 2, 0.0, 9)  # lite's hidden
    assert load_config(None, ["model.preset=lite"]).model.network() == preset("lite")
    with pytest.raises(ValueError, match=r"model\.dropout: a network started from model\.init=pre\.pt"):
        load_config(None, ["model.init=pre.pt", "model.dropout=0.0"])
    with pytest.raises(ValueError, match="not divisible"):
        load_config(None, ["model.preset=lite", "model.heads=5"]).model.network()
