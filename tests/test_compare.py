"""The backbone comparison (experiments/compare.py): every backbone and the refine stage finetuned a few steps
on a tiny generated store through ``python -m finetune``'s own entry point (in this process), one table row
each whose parameter count is ``python -m pretrain.model --summary``'s total, whose FLOPs are a direct
FlopCounterMode count, whose rate and errors are the run's own; a rerun redoes nothing, and after a lost result
only that backbone."""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics

import numpy as np
import pytest
import torch
from finetune_fakes import one_rank_env, projected_sequence

from experiments import compare
from finetune.__main__ import main as finetune_main
from finetune.checkpoint import load_lifter
from finetune.config import load_config
from finetune.model import Lifter, flop_counter
from finetune.refine import RefineHead
from ingest.store import MotionStore
from pretrain.model import main as model_main
from pretrain.model import preset
from shards.writer import build
from training.runlog import read_metrics

FRAMES = 9
# a tiny network of each backbone (--backbone-set NAME:KEY=VALUE)
SMALL = {
    "mpm": ["model.preset=tiny"],
    "videopose3d": ["model.channels=16"],
    "poseformer": ["model.channels=8", "model.layers=1", "model.heads=2"],
    "simplebaseline": ["model.channels=32", "model.layers=1"],
    "dstformer": ["model.channels=16", "model.layers=1", "model.heads=2"],
}
# the window in the config, as the h36m recipe's: SimpleBaseline3D's row still lifts one frame
RECIPE = """\
model: {frames: 9}
data: {subjects: [S1], batch_size: 8, steps_per_epoch: 2}
train: {max_steps: 3, lr: 1.0e-3, lr_decay: 0.9, log_every: 1, threads: 1}
"""


def in_process(cmd: list[str]) -> None:
    """The runner: ``python -m finetune ARGS`` through its entry point, in this process."""
    assert cmd[1:3] == ["-m", "finetune"], cmd
    with one_rank_env():
        finetune_main([*cmd[3:], "--no-progress"])


def recipe_args(root, backbones: dict[str, list[str]]) -> list[str]:
    """``experiments.compare`` flags for the generated store, shards and recipe in ``root``: ``backbones`` (name ->
    its ``--backbone-set`` sizes) on FRAMES-frame windows."""
    sizes = [a for name, sets in backbones.items() for s in sets for a in ("--backbone-set", f"{name}:{s}")]
    return [
        *("--store", str(root / "store"), "--shards", str(root / "shards"), "--backbones", *backbones),
        *("--config", str(root / "recipe.yaml"), "--frames", str(FRAMES), *sizes),
    ]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(root / "store"))
    store.write_part("h36m", "train", [projected_sequence(rng, f"S1_Walking_{i}", "S1", "train", 60) for i in range(2)])
    store.write_part("h36m", "test", [projected_sequence(rng, "S11_Eating_1", "S11", "test", 30)])
    build(str(root / "store"), root / "shards", clip_len=FRAMES, shard_size=50_000, num_cpus=1, progress=False)
    (root / "recipe.yaml").write_text(RECIPE)
    argv = [*recipe_args(root, SMALL), "--refine", "--out", str(root / "out")]
    results = compare.compare(compare.parse_args(argv), run=in_process)
    return root, argv, results


def summary_total(name: str) -> int:
    """``python -m pretrain.model --backbone NAME --frames F --arg KEY=VALUE ... --summary``'s total (the
    ``model.KEY=VALUE`` sizes of :data:`SMALL` as constructor arguments)."""
    sizes = [a for s in SMALL[name] for a in ("--arg", s.removeprefix("model."))]
    frames = [] if name in compare.SINGLE_FRAME else ["--frames", str(FRAMES)]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        model_main(["--backbone", name, *frames, *sizes, "--summary"])
    return json.loads(printed.getvalue())["total"]


def test_one_row_per_backbone(comparison):
    root, _, results = comparison
    out = root / "out"
    rows = {r["backbone"]: r for r in results["rows"]}
    assert list(rows) == [*SMALL, "mpm+refine"]
    assert json.loads((out / "results.json").read_text()) == results
    # parameters: the pretraining package's summary for the other backbones; MPM's lifter built independently
    for name in SMALL:
        if name != "mpm":
            assert rows[name]["parameters"] == summary_total(name) > 0, name
    mpm = sum(p.numel() for p in Lifter(preset("tiny", frames=FRAMES)).parameters())
    assert rows["mpm"]["parameters"] == mpm
    assert rows["mpm+refine"]["parameters"] == mpm + sum(p.numel() for p in RefineHead(17).parameters())
    for name, row in rows.items():
        folder = out / ("mpm-refine" if name == "mpm+refine" else name)
        lifter, _ = load_lifter(folder)
        assert row["frames"] == (1 if name == "simplebaseline" else FRAMES) == lifter.frames
        # FLOPs per output frame: torch's FlopCounterMode over one window of the evaluation predictor
        window = torch.randn(1, lifter.frames, 17, lifter.in_features)
        with torch.no_grad(), flop_counter() as counter:
            if name == "dstformer":
                lifter.predict_clip(window)
            else:
                lifter.predict_centre(window)
        direct = counter.get_total_flops() / (lifter.frames if name == "dstformer" else 1)
        if name == "mpm+refine":
            direct += 2 * (6 * 17 * 1024 + 1024 * 2 * 17)  # the head's two matrix products on one frame
            assert row["flops_per_frame"] > rows["mpm"]["flops_per_frame"]
        assert row["flops_per_frame"] == pytest.approx(direct) and direct > 0
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2, 3]
        assert row["samples_per_s"] == pytest.approx(statistics.median(r["samples_per_s"] for r in records[1:]))
        evaluated = json.loads((folder / "results.json").read_text())
        assert (
            row["mpjpe"] == evaluated["h36m"]["average"]["mpjpe"]
            and row["p_mpjpe"] == (evaluated["h36m"]["average"]["p_mpjpe"])
        )
        assert row["protocol"] == evaluated["protocol"] == ("seq2seq" if name == "dstformer" else "centre")
    refine = json.loads((out / "mpm-refine" / "results.json").read_text())
    assert refine["refine"] and refine["train"]["refine_from"] == str(out / "mpm" / "lifter.pt")
    assert refine["train"]["config"]["train"]["lr"] == 1e-4 and refine["train"]["config"]["train"]["max_steps"] == 3
    assert rows["mpm+refine"]["unrefined"]["mpjpe"] == refine["h36m"]["unrefined"]["average"]["mpjpe"]
    assert rows["mpm"]["size"] == rows["mpm+refine"]["size"] == "tiny"
    assert rows["dstformer"]["size"] == "full, channels=16, layers=1, heads=2"
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == results["regime"] and table[0].startswith("Every lifter finetuned with one recipe")
    assert "3 steps of batch 8" in table[0] and "9-frame windows" in table[0]
    assert table[2].startswith("| backbone | size | frames | parameters | FLOPs per frame | training samples/s")
    body = table[4:10]
    assert [line.split(" | ")[0] for line in body] == [f"| {name}" for name in rows]
    assert f"{rows['videopose3d']['parameters']:,}" in body[1]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_redoes_nothing_and_a_lost_result_only_its_backbone(comparison):
    root, argv, results = comparison
    calls = []
    again = compare.compare(compare.parse_args(argv), run=calls.append)
    assert calls == []
    assert [r["mpjpe"] for r in again["rows"]] == [r["mpjpe"] for r in results["rows"]]
    lost = root / "out" / "poseformer" / "results.json"
    kept = lost.read_bytes()
    lost.unlink()

    def recording(cmd):  # records the command and puts the result back, as the run would
        calls.append(cmd)
        lost.write_bytes(kept)

    compare.compare(compare.parse_args(argv), run=recording)
    assert len(calls) == 1 and calls[0][calls[0].index("--backbone") + 1] == "poseformer"
    assert calls[0][calls[0].index("--out") + 1] == str(root / "out" / "poseformer")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbones", "mpm", "nonesuch"], r"--backbones: unknown \['nonesuch'\]"),
        (["--backbones", "videopose3d", "--refine"], "--refine refines MPM's finetuned lifter"),
        (["--backbones", "videopose3d", "--backbone-set", "videopose3d=channels"], "expected NAME:KEY=VALUE"),
        (["--backbones", "videopose3d", "--backbone-set", "dstformer:model.channels=8"], "not among --backbones"),
        (["--backbones", "simplebaseline", "--backbone-set", "simplebaseline:model.hidden=8"], "does not apply"),
        (["--backbones", "videopose3d", "--frames", "10"], r"model \(videopose3d\): .*10"),
        (["--backbones", "mpm", "--refine", "--budget", "1m"], "--budget gives each backbone one training time"),
        (["--backbones", "mpm", "--budget", "soon"], "give a positive duration"),
    ],
)
def test_mistakes_are_refused_before_any_run(comparison, tmp_path, extra, message):
    root, _, _ = comparison
    argv = ["--store", str(root / "store"), "--shards", str(root / "shards"), "--out", str(tmp_path), *extra]
    calls = []
    with pytest.raises(ValueError, match=message):
        compare.compare(compare.parse_args(argv), run=calls.append)
    assert calls == []


def test_step_rate_is_the_median_interval_and_skips_a_restarted_clock(tmp_path):
    records = [
        {"step": 1, "seconds": 5.0},  # the first step, its warm-up inside: never an interval's start alone
        {"step": 5, "seconds": 6.0},  # 4 steps in 1 s
        {"step": 10, "seconds": 7.25},  # 5 steps in 1.25 s
        {"step": 15, "seconds": 0.5},  # a resumed invocation: its clock restarted, no interval
        {"step": 20, "seconds": 2.5},  # 5 steps in 2 s
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert compare.step_rate(tmp_path) == pytest.approx(4.0)  # median of 4, 4, 2.5
    (tmp_path / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
    with pytest.raises(ValueError, match="metrics.jsonl: needs two training records"):
        compare.step_rate(tmp_path)


def test_budget_stretches_the_schedule_to_the_steps(tmp_path):
    # h36m: 6,400 steps decayed every 320 (20 decays); at 1,000 steps every 50 keeps the 20 decays
    assert compare.budget_flags(load_config("h36m"), 1000) == [
        "--set",
        "train.max_steps=1000",
        "--set",
        "train.decay_every=50",
    ]
    # h36m-semi: 800 steps, decayed every epoch of 100 steps: at 2,500 steps every 312.5 -> 312, and the 25
    # epochs of 100 steps that hold them (its 20 would end it at 2,000)
    assert compare.budget_flags(load_config("h36m-semi"), 2500)[3::2] == ["train.decay_every=312", "train.epochs=25"]
    assert compare.budget_flags(load_config("h36m-semi"), 3)[3::2] == ["train.decay_every=1", "train.epochs=20"]
    with pytest.raises(ValueError, match="needs it in steps: set train.decay_every or data.steps_per_epoch"):
        compare.budget_flags(load_config(None, ["train.max_steps=100"]), 50)


def test_budget_trains_each_backbone_the_steps_its_probe_affords(comparison, tmp_path):
    root, _, _ = comparison
    small = {name: SMALL[name] for name in ("mpm", "simplebaseline")}
    argv = [*recipe_args(root, small), "--budget", "2s", "--probe-steps", "4", "--out", str(tmp_path)]
    results = compare.compare(compare.parse_args(argv), run=in_process)
    for row in results["rows"]:
        name = row["backbone"]
        probe = tmp_path / "probe" / name
        assert [r["step"] for r in read_metrics(probe / "metrics.jsonl")] == [1, 2, 3, 4]
        assert not (probe / "results.json").exists()  # the probe is not evaluated
        steps = max(1, math.floor(2 * compare.step_rate(probe)))
        trained = json.loads((tmp_path / name / "results.json").read_text())["train"]
        assert row["steps"] == trained["steps"] == trained["config"]["train"]["max_steps"] == steps
        # the recipe's 3 steps decayed every epoch of 2, stretched
        assert trained["config"]["train"]["decay_every"] == max(1, round(2 * steps / 3))
        assert row["train_s"] == trained["train_seconds"] > 0
    assert "equal wall time, 2s of training per backbone" in results["regime"]
    calls = []
    compare.compare(compare.parse_args(argv), run=calls.append)  # finished: neither probes nor trains again
    assert calls == []
