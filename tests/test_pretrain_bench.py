"""pretrain.bench: one JSON line with consistent figures (a smoke run on the tiny preset)."""

from __future__ import annotations

import json

import pytest

from pretrain.bench import main


def test_bench_prints_one_consistent_json_line(capsys):
    result = main(
        ["--preset", "tiny", "--frames", "27", "--batch-size", "4", "--steps", "2", "--warmup", "1", "--threads", "1"]
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0]) == result
    for key in ("device", "dtype", "batch_size", "samples_per_s", "flops_per_sample", "achieved_flops_per_s"):
        assert key in result
    assert result["device"] == "cpu" and result["dtype"] == "float32" and result["batch_size"] == 4
    assert result["samples_per_s"] == pytest.approx(4 / result["step_s_median"])
    assert result["achieved_flops_per_s"] == pytest.approx(result["flops_per_sample"] * result["samples_per_s"])
    # at least the forward matrix products of the shared temporal layers of both tasks are counted:
    # 2 tasks x 2 layers x V tokens x 2 x (4 C^2 + 2 C H) with V = 27 - int(27 * 0.6) = 11, C = 32, H = 64
    assert result["flops_per_sample"] > 2 * 2 * 11 * 2 * (4 * 32 * 32 + 2 * 32 * 64)
