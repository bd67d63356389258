"""``python -m finetune.bench`` prints exactly one JSON line with positive rates."""

from __future__ import annotations

import json

from finetune.bench import main


def test_bench_prints_one_json_line(capsys):
    result = main(["--frames", "9", "--sequence", "50", "--batch-size", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == result
    assert result["frames"] == 9
    assert min(result["eval_windows_per_s"], result["train_windows_per_s"], result["p_mpjpe_poses_per_s"]) > 0
