"""``python -m shards.bench`` end to end on a tiny store (a smoke test of the JSON line, not a speed test)."""

from __future__ import annotations

import json

from shards_fakes import make_store

from shards.bench import main


def test_bench_prints_one_json_line(tmp_path, capsys, ray_local):
    make_store(tmp_path / "store", {("h36m", "train"): [300, 420], ("h36m", "test"): [260]})
    assert main(["--store", str(tmp_path / "store"), "--clips", "40", "--windows", "640"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["windows_measured"] == {"loader": 640, "loader_float16": 640, "pickle": 40, "wds_clip": 40}
    assert set(result["cold_wall_windows_per_s"]) == {"loader", "pickle", "wds_clip"}
    rates = {k: result[f"{k}_windows_per_s"] for k in ("loader", "pickle", "wds_clip")}
    assert all(v > 0 for v in rates.values())
    assert abs(result["ratio_vs_pickle"] - rates["loader"] / rates["pickle"]) < 0.01 * result["ratio_vs_pickle"] + 0.01
    assert 0 < result["bytes_per_window"]["loader"] < result["bytes_per_window"]["pickle"]
    # a pickled clip holds two (243, 17, 3) float32 arrays: at least 2 * 49,572 bytes
    assert result["bytes_per_window"]["pickle"] > 2 * 243 * 17 * 3 * 4
