"""The other backbones in finetuning and evaluation (finetune/backbone_lifter.py): a few steps of each through
the finetuning loop on generated shards, its export and its evaluation by its own protocol; the adapter's
predictors against the evaluation's; the lifter file's round trip; the configurations refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from finetune_fakes import make_sequence, one_rank_env

from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import load_lifter, save_lifter
from finetune.config import load_config
from finetune.model import lifting_loss
from finetune.train import train
from finetune.windows import predict_sequence
from ingest.skeleton import H36M16, H36M17
from ingest.store import MotionStore
from pretrain import backbones
from shards.writer import build

# small networks of each backbone: config overrides, and the same as constructor arguments
SMALL = {
    "videopose3d": dict(frames=9, channels=16),
    "simplebaseline": dict(frames=1, channels=32, layers=1),
    "poseformer": dict(frames=9, channels=8, layers=1, heads=2),
    "dstformer": dict(frames=9, channels=16, layers=1, heads=2),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("backbones")
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(root / "store"))
    store.write_part(
        "h36m", "train", [make_sequence(rng, f"S1_Walking_{i}", "S1", "Walking", "train", 120) for i in range(2)]
    )
    store.write_part("h36m", "test", [make_sequence(rng, "S11_Eating_1", "S11", "Eating", "test", 40)])
    build(str(root / "store"), root / "shards", clip_len=9, shard_size=50_000, num_cpus=1, progress=False)
    return root


def small(name: str) -> BackboneLifter:
    return BackboneLifter(name, backbones.build(name, **SMALL[name]))


@pytest.mark.parametrize("name", list(SMALL))
def test_backbone_finetunes_exports_and_evaluates_by_its_protocol(name, data, tmp_path):
    out = tmp_path / "run"
    overrides = [f"model.{k}={v}" for k, v in SMALL[name].items()]
    cfg = load_config(
        None,
        [
            f"eval.store={data / 'store'}",
            f"data.shards={data / 'shards'}",
            f"train.out={out}",
            f"model.backbone={name}",
            *overrides,
            "data.batch_size=8",
            "train.max_steps=2",
            "train.log_every=1",
        ],
    )
    with one_rank_env():
        summary = train(cfg, progress=False)
    assert summary["steps"] == 2 and summary["init"] is None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)
    lifter, _ = load_lifter(out)
    assert isinstance(lifter, BackboneLifter) and lifter.name == name
    assert lifter.backbone.arguments == backbones.build(name, **SMALL[name]).arguments
    results = json.loads((out / "results.json").read_text())
    assert results["backbone"] == name
    assert results["protocol"] == ("seq2seq" if name == "dstformer" else "centre")
    assert results["h36m"]["average"]["frames"] == 40 and np.isfinite(results["h36m"]["average"]["mpjpe"])


@pytest.mark.parametrize("name", list(SMALL))
def test_predictors_agree_with_the_forward_pass(name):
    """``predict_centre`` is the forward pass's centre; ``predict_clip`` of a centre-frame backbone is the
    centre-frame evaluation of the clip (edge-padded windows); DSTformer's is the backbone itself."""
    torch.manual_seed(0)
    lifter = small(name).eval()
    c = lifter.in_features + 1  # an extra channel is ignored
    windows = torch.randn(3, lifter.frames, 17, c)
    with torch.no_grad():
        torch.testing.assert_close(lifter.predict_centre(windows), lifter(windows)[0])
        t = lifter.frames if name == "dstformer" else 12  # a clip longer than a centre-frame window
        clip = torch.randn(2, t, 17, c)
        pred = lifter.predict_clip(clip)
    assert pred.shape == (2, t, 17, 3)
    if name == "dstformer":
        torch.testing.assert_close(pred, lifter.backbone(clip[..., :3]))
    else:
        expected = predict_sequence(lifter, clip[1].numpy(), lifter.frames, H36M17)
        np.testing.assert_allclose(pred[1].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_lifter_file_round_trip(tmp_path):
    torch.manual_seed(0)
    lifter = BackboneLifter("simplebaseline", backbones.build("simplebaseline", joints=16, channels=32)).eval()
    path = save_lifter(tmp_path / "lifter.pt", lifter, meta={"steps": 3})
    blob = torch.load(path, weights_only=True)
    assert blob["backbone"] == "simplebaseline" and blob["arguments"]["joints"] == 16
    loaded, meta = load_lifter(path)
    assert meta == {"steps": 3} and loaded.joint_set is H36M16 and not loaded.training
    x = torch.randn(4, 1, 16, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], lifter(x)[0])
    blob["arguments"]["hidden"] = 3
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad.pt: .*takes no argument \['hidden'\]"):
        load_lifter(tmp_path / "bad.pt")


def test_a_centre_frame_backbone_trains_on_the_centre_term_alone():
    centre, target = torch.zeros(2, 17, 3), torch.zeros(2, 9, 17, 3)
    target[:, 4, :, 0] = 1.0
    loss, parts = lifting_loss(centre, None, target, torch.ones(2, 9, dtype=torch.bool), lambda_ft=2.0)
    assert loss.item() == pytest.approx(2.0) and set(parts) == {"mpjpe_centre"}


def test_occluded_joints_are_refused():
    lifter = small("videopose3d")
    with pytest.raises(ValueError, match="no mask token"):
        lifter(torch.randn(1, 9, 17, 2), torch.zeros(1, 17, dtype=torch.bool))
    with pytest.raises(ValueError, match="causal videopose3d predicts the last frame"):
        BackboneLifter("videopose3d", backbones.build("videopose3d", frames=9, channels=8, causal=True))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.backbone=dstformer", "model.freeze_shared=true"], r"model.freeze_shared"),
        (["model.backbone=videopose3d", "model.layers=2"], r"model.layers does not apply to the videopose3d"),
        (["model.backbone=videopose3d", "model.size=lite"], r"model.size: videopose3d has sizes \['full'\]"),
        (["model.size=lite"], r"model.size is another backbone's released size"),
        (["model.backbone=resnet"], r"model.backbone must be one of"),
        (["model.backbone=simplebaseline", "data.occlusion_prob=0.5"], r"data.occlusion_prob: .*mask token"),
        (["model.backbone=simplebaseline", "eval.completion=true"], r"eval.completion: .*mask token"),
    ],
)
def test_configurations_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_backbone_sizes_come_from_the_model_section():
    cfg = load_config(None, ["model.backbone=dstformer", "model.size=lite", "model.frames=27", "model.layers=1"])
    net = cfg.model.backbone_network()
    assert (net.arguments["channels"], net.arguments["mlp_ratio"], net.frames, net.arguments["layers"]) == (
        256,
        4.0,
        27,
        1,
    )
    with pytest.raises(ValueError, match="not a power of 3"):
        load_config(None, ["model.backbone=videopose3d", "model.frames=25"]).model.backbone_network()
