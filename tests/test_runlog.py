"""The run log (training.runlog): resume keeps each step once and survives the torn last line of a killed
run; a damaged line elsewhere is an error naming the file and line."""

from __future__ import annotations

import json

import pytest

from training.runlog import MetricsLog, read_metrics


def test_resume_drops_later_steps_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"step": 6, "lo')  # killed mid-write
    with pytest.raises(ValueError, match=r"metrics\.jsonl:4: not a JSON line"):
        read_metrics(path)
    with pytest.warns(UserWarning, match=r"metrics\.jsonl:4: dropped a torn last line"):
        log = MetricsLog(path, resume_step=2)
    assert read_metrics(path) == good[:2]  # step 4 came after the checkpoint at step 2
    log.write({"step": 3, "loss": 0.3})
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_a_damaged_line_before_the_last_is_an_error_even_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON line"):
        MetricsLog(path, resume_step=3)
    path.write_text('{"step": 1}\n{"step": 2, "lo\n')  # complete last line (it has its newline): not torn
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON line"):
        MetricsLog(path, resume_step=3)
