"""The one configuration mechanism of both stages (training/settings.py): file, derived shortcut flags and
``--set`` in that order of precedence, shipped configs by name, errors that name the key, DeepSpeed files
that hold only what DeepSpeed owns, and the evaluation options that finetuning and finetune.evaluate share."""

from __future__ import annotations

import dataclasses
import json

import pytest

from finetune import evaluate
from finetune.__main__ import SHORTCUTS as FINETUNE_FLAGS
from finetune.config import SHIPPED as FINETUNE_SHIPPED
from finetune.config import FinetuneConfig, load_config
from pretrain.config import SHIPPED as PRETRAIN_SHIPPED
from pretrain.config import Config
from pretrain.config import load_config as load_pretrain_config
from training import settings
from training.engine import load_ds_config


def parse(argv):
    p = settings.parser(FinetuneConfig, "finetune", "test", FINETUNE_FLAGS, FINETUNE_SHIPPED)
    return settings.from_args(FinetuneConfig, p.parse_args(argv), FINETUNE_FLAGS, FINETUNE_SHIPPED)


def test_file_then_flags_then_set(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text("data: {batch_size: 32, subjects: [S1]}\ntrain: {lr: 1.0e-3, epochs: 3}\neval: {flip: true}\n")
    cfg = parse(
        [
            "--config",
            str(path),
            "--lr",
            "2e-3",
            "--set",
            "train.lr=5e-4",
            "--no-flip",
            "--subjects",
            "S1",
            "S5",
            "--set",
            "eval.cameras=[54138969]",
            "--no-evaluate",
        ]
    )
    assert cfg.data.batch_size == 32 and cfg.train.epochs == 3  # from the file
    assert cfg.train.lr == 5e-4  # --set comes after the flag
    assert cfg.data.flip is False and cfg.data.subjects == ["S1", "S5"] and cfg.evaluate is False
    assert cfg.eval.flip is True and cfg.eval.cameras == ["54138969"]  # a camera id read as a number stays text
    assert parse([]) == FinetuneConfig()  # nothing given: the defaults
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(cfg.to_dict()))
    assert load_config(saved) == cfg  # a saved config round-trips


def test_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"config: train: unknown key\(s\) \['lrr'\]"):
        load_config(None, ["train.lrr=1"])
    with pytest.raises(ValueError, match=r"train\.lr_decay must be in \(0, 1\]"):
        load_config(None, ["train.lr_decay=2"])
    with pytest.raises(ValueError, match=r"data\.batch_size: expected int, got 'many'"):
        load_config(None, ["data.batch_size=many"])
    with pytest.raises(ValueError, match="must be evaluate or one of"):
        load_config(None, ["optimizer.lr=1"])
    with pytest.raises(ValueError, match=r"eval\.datasets: \['amass'\] cannot be evaluated"):
        load_config(None, ["eval.datasets=[amass]"])
    with pytest.raises(SystemExit):  # argparse: the flag's type comes from the field
        parse(["--batch-size", "many"])


def test_shipped_configs_by_name():
    assert load_pretrain_config("demo").preset == "tiny" and load_pretrain_config("h36m-semi").preset == "lite"
    assert load_config("h36m-semi").data.subjects == ["S1"] and load_config("demo").train.epochs == 5
    assert load_config("h36m-full").data.subjects == ["S1", "S5", "S6", "S7", "S8"]
    # the ablation's two supervision rows differ in their labels only
    semi, full = load_config("h36m-semi").to_dict(), load_config("h36m-full").to_dict()
    semi["data"].pop("subjects"), full["data"].pop("subjects")
    assert semi == full and semi["model"]["centre_head"] == "decoder"
    assert {p.stem for p in PRETRAIN_SHIPPED.glob("*.yaml")} == {"demo", "h36m-semi"}
    assert {p.stem for p in FINETUNE_SHIPPED.glob("*.yaml")} == {"demo", "h36m", "h36m-full", "h36m-semi"}
    h36m = load_config("h36m")
    assert h36m.eval.flip and h36m.train.max_steps == 6400 and h36m.train.deepspeed_config == "cpu_bf16"
    with pytest.raises(FileNotFoundError, match=r"shipped: \['demo', 'h36m', 'h36m-full', 'h36m-semi'\]"):
        load_config("nonesuch")


def test_help_lists_every_key():
    text = settings.parser(Config, "pretrain", "test", {}, PRETRAIN_SHIPPED).format_help()
    for section in ("model", "mask", "objective", "data", "train"):
        for f in dataclasses.fields(getattr(Config.defaults(), section)):
            assert f"  {section}.{f.name} = " in text


def test_deepspeed_files_hold_only_what_deepspeed_owns(tmp_path):
    for path in PRETRAIN_SHIPPED.glob("*.json"):
        full = load_ds_config(path, micro_batch=8, grad_accum=2, grad_clip=0.5, world_size=3)
        assert (
            full["train_micro_batch_size_per_gpu"],
            full["gradient_accumulation_steps"],
            full["train_batch_size"],
            full["gradient_clipping"],
        ) == (8, 2, 48, 0.5)
    bad = tmp_path / "ds.json"
    bad.write_text(json.dumps({"train_batch_size": 64, "bf16": {"enabled": True}}))
    with pytest.raises(ValueError, match=r"ds\.json: \['train_batch_size'\] are set by the run config"):
        load_ds_config(bad, micro_batch=8, grad_accum=1, grad_clip=0.0, world_size=1)


def test_evaluation_options_are_one_set(capsys):
    """``python -m finetune.evaluate`` has one flag per EvalConfig field, of the field's name, and
    finetuning's ``eval`` section is that same dataclass."""
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(evaluate.EvalConfig):
        assert f"--{f.name.replace('_', '-')}" in text
    assert isinstance(FinetuneConfig().eval, evaluate.EvalConfig)
    assert load_config(None, ["eval.completion_every=4"]).eval == evaluate.EvalConfig(completion_every=4)


def test_shuffle_buffer_size_is_checked():
    """The loaders' shuffle buffers are run settings, never empty."""
    with pytest.raises(ValueError, match="data.shuffle_segments must be >= 1"):
        settings.build(FinetuneConfig, {"data": {"shuffle_segments": 0}})
    assert settings.build(Config, {"data": {"shuffle_segments": 8}}).data.shuffle_segments == 8
    with pytest.raises(ValueError, match="data.shuffle_segments must be >= 1"):
        settings.build(Config, {"data": {"shuffle_segments": 0}})
