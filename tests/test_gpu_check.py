"""cluster/gpu_check.sh run on CPU (``--cpu``: DS_ACCELERATOR=cpu, gloo, tiny sizes): one JSON line per check with
its figures, exit status 0; a failing check (a memory budget the bench cannot fit) makes it 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from launch import launcher_env, run_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COMMON = {"check", "ok", "seconds"}
KEYS = {  # the checks in the order printed, and the figures of each line
    "pretrain_bench": {"device", "preset", "frames", "batch_size", "dtype", "samples_per_s", "achieved_tflops"}
    | {"peak_tflops", "mfu"},
    "peak_memory": {"device", "peak_gb", "device_gb", "budget_gb"},
    "data": {"shards", "clip_len"},
    "pretrain_resume": {"steps", "loss", "latest"},
    "finetune_resume": {"steps", "loss", "latest"},
    "eval_bench": {"device", "preset", "frames", "dtype", "eval_frames_per_s", "eval_seq2seq_frames_per_s"}
    | {"train_windows_per_s"},
    "allreduce": {"backend", "mib", "gbytes_per_s"},
}


def gpu_check(*args: str) -> tuple[int, list[dict]]:
    """Exit status and the JSON lines of ``cluster/gpu_check.sh --cpu ARGS`` (its process group killed after)."""
    code, output = run_group(
        ["cluster/gpu_check.sh", "--cpu", *args], cwd=REPO, env=launcher_env(PYTHON=sys.executable), timeout=170
    )
    return code, [json.loads(line) for line in output.splitlines() if line.startswith('{"check"')]


def test_every_check_prints_its_json_line_and_passes(tmp_path):
    code, lines = gpu_check("--peak-tflops", "0.5", "--keep", str(tmp_path))
    assert [line["check"] for line in lines] == list(KEYS), lines
    for line in lines:
        assert line["ok"] is True and set(line) == COMMON | KEYS[line["check"]], line
    assert code == 0
    bench, memory, data, pretrain, finetune, evaluation, allreduce = lines
    assert bench["peak_tflops"] == 0.5 and bench["mfu"] == pytest.approx(bench["achieved_tflops"] / 0.5)
    assert 0 < memory["peak_gb"] < memory["device_gb"] == memory["budget_gb"]
    assert (pretrain["steps"], pretrain["latest"]) == (8, "step00000008")
    assert (finetune["steps"], finetune["latest"]) == (6, "step00000006")
    assert evaluation["eval_frames_per_s"] > 0 and allreduce["backend"] == "gloo"


def test_a_failing_check_fails_the_script():
    code, lines = gpu_check("--only", "bench", "--memory-budget-gb", "1e-6")
    assert [(line["check"], line["ok"]) for line in lines] == [("pretrain_bench", True), ("peak_memory", False)]
    assert "above the budget of 1e-06 GB" in lines[1]["error"]
    assert code == 1
