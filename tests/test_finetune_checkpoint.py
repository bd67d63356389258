"""lifter.pt round trip and the ``python -m finetune.evaluate`` command on a generated store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from finetune_fakes import make_sequence

from finetune.checkpoint import load_lifter, save_lifter
from finetune.evaluate import main
from finetune.model import Lifter
from ingest.store import MotionStore
from pretrain.export import save_export
from pretrain.model import MPM, preset


def test_round_trip_keeps_predictions(tmp_path):
    lifter = Lifter(preset("tiny", joints=16), frames=9).eval()
    path = save_lifter(tmp_path, lifter, meta={"steps": 3})
    assert path.name == "lifter.pt"
    loaded, meta = load_lifter(tmp_path)
    assert meta == {"steps": 3} and loaded.frames == 9 and loaded.joint_set.name == "h36m16"
    x = torch.randn(2, 9, 16, 2)
    torch.testing.assert_close(loaded(x)[0], lifter(x)[0])
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a posemill lifter"):
        load_lifter(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_lifter(tmp_path / "missing")


def test_round_trip_keeps_the_centre_head(tmp_path):
    lifter = Lifter(preset("tiny"), frames=9, centre_head="decoder").eval()
    loaded, _ = load_lifter(save_lifter(tmp_path, lifter))
    assert loaded.centre_head == "decoder" and not hasattr(loaded, "reduce")
    x = torch.randn(2, 9, 17, 2)
    torch.testing.assert_close(loaded.predict_centre(x), lifter.predict_clip(x)[:, 4])


def test_evaluate_command_writes_results(tmp_path, capsys):
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(tmp_path / "store"))
    store.write_part(
        "h36m",
        "p",
        [
            make_sequence(rng, "S11_Walking_1_a", "S11", "Walking", "test", 12),
            make_sequence(rng, "S11_Posing_1_a", "S11", "Posing", "test", 6),
        ],
    )
    valid = np.arange(10) > 2
    store.write_part(
        "mpi_inf_3dhp",
        "TS1",
        [
            make_sequence(
                rng, "TS1", "TS1", "test", "test", 10, frames={"valid": valid, "activity": np.full(10, 2, np.int32)}
            )
        ],
    )
    save_lifter(tmp_path / "run", Lifter(preset("tiny"), frames=9).eval())
    save_export(tmp_path / "pre.pt", preset("tiny", joints=16), MPM(preset("tiny", joints=16)).state_dict())
    results = main(
        [
            str(tmp_path / "run"),
            "--store",
            str(tmp_path / "store"),
            "--flip",
            "--completion",
            "--completion-every",
            "3",
            "--pretrained",
            str(tmp_path / "pre.pt"),
            "--render",
            "S11_Walking_1_a",
        ]
    )
    printed = capsys.readouterr().out
    assert "Protocol #1 MPJPE" in printed and "Exercising" in printed and "left leg + left arm" in printed
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["h36m"]["average"]["mpjpe"] == pytest.approx(results["h36m"]["average"]["mpjpe"])
    assert saved["h36m"]["average"]["frames"] == 18 and saved["flip"] is True
    assert saved["mpi_inf_3dhp"]["all"]["frames"] == valid.sum()
    assert saved["completion_2d"]["2 legs"]["frames"] == 4 + 2
    assert saved["completion_3d"]["2 arms"]["mpjpe_hidden"] > 0 and "completion 3D->3D" in printed
    assert (tmp_path / "run" / "h36m_actions.png").is_file() and (tmp_path / "run" / "S11_Walking_1_a.png").is_file()
    assert {p.suffix for p in (tmp_path / "run").glob("S11_Walking_1_a.*")} in ({".png", ".mp4"}, {".png", ".gif"})
    with pytest.raises(SystemExit) as exit_:  # refused before any evaluation
        main([str(tmp_path / "run"), "--store", str(tmp_path / "store"), "--render", "S11_Nothing"])
    assert exit_.value.code == 2 and "no sequence 'S11_Nothing'" in capsys.readouterr().err
