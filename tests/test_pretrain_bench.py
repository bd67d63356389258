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


def test_backbone_bench_counts_simplebaselines_matmuls(capsys):
    """``--backbone simplebaseline``: its lifting step's FLOPs per sample equal the hand count of Martinez'
    MLP (17 joints: 34 -> 1024, two residual blocks of two 1024 x 1024 layers, 1024 -> 51): 2 FLOPs per
    multiply-add, forward once and backward twice (input and weight gradients), but no input gradient for the
    first layer, whose input is data."""
    result = main(
        ["--backbone", "simplebaseline", "--batch-size", "4", "--steps", "2", "--warmup", "1", "--threads", "1"]
    )
    assert (result["backbone"], result["size"], result["frames"]) == ("simplebaseline", "full", 1)
    macs = 34 * 1024 + 4 * 1024 * 1024 + 1024 * 51
    assert result["flops_per_sample"] == 2 * (3 * macs - 34 * 1024)
    assert result["samples_per_s"] == pytest.approx(4 / result["step_s_median"])


def test_backbone_bench_refuses_a_size_the_backbone_lacks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--backbone", "videopose3d", "--size", "lite"])
    assert exit_info.value.code == 2
    assert "backbone videopose3d has no size 'lite'; its sizes: ['full']" in capsys.readouterr().err
