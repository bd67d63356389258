"""Files from outside that carry pickles (npz, body models, checkpoints) are read as data: a payload that
would run code is refused with the file's name and never runs; the real layouts (VideoPose3D dicts,
SMPL-family pickles, our checkpoints) still load."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
import torch

from finetune.checkpoint import FORMAT, load_lifter
from finetune.model import Lifter
from ingest.body_model import load_body_model
from ingest.h36m import H36MReader
from ingest.samples.stand_in import write_stand_in
from ingest.untrusted import load_npz, load_pickle
from pretrain.export import load_pretrained
from pretrain.model import preset


class Payload:
    """Unpickling this creates the file ``marker``: what a malicious data file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_data_pickles_round_trip(tmp_path):
    positions = {"S1": {"Walking 1": np.arange(6.0).reshape(1, 2, 3)}, "S5": {}}
    np.savez(tmp_path / "d.npz", positions_3d=positions, plain=np.eye(2, dtype=np.float32))
    npz = load_npz(tmp_path / "d.npz")
    assert npz["plain"].dtype == np.float32 and np.array_equal(npz["plain"], np.eye(2))
    loaded = npz["positions_3d"].item()
    assert loaded.keys() == positions.keys()
    assert np.array_equal(loaded["S1"]["Walking 1"], positions["S1"]["Walking 1"])
    model = {
        "J_regressor": scipy.sparse.csc_matrix(np.eye(3)),
        "f": np.zeros((2, 3), np.uint32),
        "kintree_table": np.zeros((2, 4), np.int64),
        "bs_style": "lbs",
        "scale": np.float64(2.0),
    }
    with open(tmp_path / "m.pkl", "wb") as fh:
        pickle.dump(model, fh, protocol=2)
    back = load_pickle(tmp_path / "m.pkl", encoding="latin1")
    assert (back["J_regressor"] != model["J_regressor"]).nnz == 0 and back["bs_style"] == "lbs"
    assert back["scale"] == 2.0


def test_code_in_data_files_never_runs(tmp_path):
    marker = tmp_path / "ran"
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=np.array({"S1": Payload(marker)}, dtype=object))
    with pytest.raises(ValueError, match=r"data_3d_h36m\.npz: member 'positions_3d' not loaded as data"):
        H36MReader().read(tmp_path / "data_3d_h36m.npz")
    np.savez(tmp_path / "dets.npz", positions_2d=np.zeros(3), metadata=np.array(Payload(marker), dtype=object))
    with pytest.raises(ValueError, match=r"dets\.npz: member 'metadata' not loaded as data"):
        H36MReader(detections=tmp_path / "dets.npz")._detections()
    models = tmp_path / "models"
    write_stand_in(models, ("smplx",), genders=("male",))
    path = next((models / "smplh").glob("SMPLH_MALE.pkl"))
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    data["extra"] = Payload(marker)
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(ValueError, match=r"SMPLH_MALE\.pkl: not loaded as data: io\.open is not an array type"):
        load_body_model(models, "smplh", "male")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match=r"text\.npz: not an npz archive"):
        load_npz(tmp_path / "text.npz")
    assert not marker.exists()


def test_checkpoints_are_data_not_code(tmp_path):
    """A lifter file, a pretraining export and a DeepSpeed model-states file that would run code when
    unpickled are refused, naming the file; the code never runs."""
    marker = tmp_path / "ran"
    lifter = Lifter(preset("tiny"), frames=9)
    blob = {
        "format": FORMAT,
        "config": {},
        "frames": 9,
        "strides": [1, 3, 3],
        "state_dict": lifter.state_dict(),
        "meta": Payload(marker),
    }
    torch.save(blob, tmp_path / "lifter.pt")
    with pytest.raises(ValueError, match=r"lifter\.pt: not loaded.*never as code"):
        load_lifter(tmp_path / "lifter.pt")
    torch.save({"config": Payload(marker), "state_dict": {}}, tmp_path / "pre.pt")
    with pytest.raises(ValueError, match=r"pre\.pt: not loaded"):
        load_pretrained(tmp_path / "pre.pt")
    tag = tmp_path / "checkpoints" / "step1"
    tag.mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest").write_text("step1")
    torch.save({"module": {}, "config": Payload(marker)}, tag / "mp_rank_00_model_states.pt")
    with pytest.raises(ValueError, match=r"mp_rank_00_model_states\.pt: not loaded"):
        load_pretrained(tmp_path / "checkpoints")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pt: not loaded"):
        load_lifter(tmp_path / "text.pt")
    assert not marker.exists()
