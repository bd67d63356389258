"""``python -m finetune.bench`` prints exactly one JSON line with positive rates."""

from __future__ import annotations

import json

from finetune.bench import main


def test_bench_prints_one_json_line(capsys):
    result = main(["--frames", "9", "--sequence", "50", "--batch-size", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == result
    assert result["frames"] == 9
    keys = (
        "eval_frames_per_s",
        "eval_seq2seq_frames_per_s",
        "eval_flops_per_s",
        "matmul_flops_per_s",
        "train_windows_per_s",
        "p_mpjpe_poses_per_s",
    )
    assert min(result[k] for k in keys) > 0
    expected = result["eval_flops_per_window"] * result["eval_frames_per_s"]  # the rate is rounded to 0.1
    assert abs(result["eval_flops_per_s"] / expected - 1) < 0.05
    share = result["eval_flops_per_s"] / result["matmul_flops_per_s"]
    assert abs(result["eval_effective_share"] - share) < 1e-3
    assert 0 < result["eval_attention_flops_per_window"] < result["eval_flops_per_window"]


def test_bench_bf16_compares_like_with_like(capsys):
    """--dtype bf16 runs evaluation under CPU bfloat16 autocast (features of 2 bytes: twice the windows per
    call of float32) and says so in its line."""
    result = main(["--frames", "9", "--sequence", "20", "--batch-size", "2", "--dtype", "bf16"])
    capsys.readouterr()
    assert result["dtype"] == "bf16" and result["eval_frames_per_s"] > 0 and result["matmul_flops_per_s"] > 0
    fp32 = main(["--frames", "9", "--sequence", "20", "--batch-size", "2"])
    capsys.readouterr()
    assert abs(result["eval_batch"] - 2 * fp32["eval_batch"]) <= 1  # floor division of the byte budget
