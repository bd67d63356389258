"""MPM's refine stage (finetune/refine.py): the head's shapes and its two hand-checkable properties, the
back-projection against the pixel pinhole formula (and against the reference's ``get_uvd2xyz`` and ``refine``
when a checkout of github.com/vvirgooo2/MPM is named by the environment variable MPM), the stream's camera and
pelvis under the flip, a refine stage through the finetuning loop (its loss falls, the lifter trains with the
head, evaluation scores refined and unrefined), and the lifter file's round trip."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_fakes import HEIGHT, WIDTH, C, F, one_rank_env, projected_sequence

from finetune.checkpoint import describe, load_lifter, save_lifter
from finetune.config import load_config
from finetune.evaluate import predict_store_sequence
from finetune.model import Lifter
from finetune.refine import RefineHead, backproject, refine_centre, refine_loss, refine_sequence
from finetune.train import build_lifter, train
from ingest.skeleton import H36M17
from ingest.store import MotionStore
from pretrain.model import preset
from shards.codec import normalize_2d, normalize_camera
from shards.stream import LoaderOptions, make_loader
from shards.writer import build


@pytest.fixture(scope="module")
def data(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("refine")
    rng = np.random.default_rng(0)
    store = MotionStore.open(str(root / "store"))
    sequences = [projected_sequence(rng, f"S1_Walking_{i}", "S1", "train", 120) for i in range(3)]
    store.write_part("h36m", "train", sequences)
    store.write_part("h36m", "test", [projected_sequence(rng, "S11_Eating_1", "S11", "test", 40)])
    build(str(root / "store"), root / "shards", clip_len=9, shard_size=50_000, num_cpus=1, progress=False)
    return root


def pinhole_inputs(rng, b: int = 5):
    """Absolute poses (B, 17, 3) metres, their normalised 2D, the normalised camera and the pelvis depth."""
    pose = np.array([0.1, -0.2, 5.0]) + rng.uniform(-0.8, 0.8, (b, 17, 3))
    uv = normalize_2d(pose[..., :2] / pose[..., 2:] * F + C, WIDTH, HEIGHT)
    camera = np.tile(normalize_camera(F, C, WIDTH, HEIGHT), (b, 1))
    return pose, uv, camera, pose[:, 0, 2]


def t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def test_head_shapes_and_refusals():
    head = RefineHead(17)
    assert [tuple(p.shape) for p in head.parameters()] == [(1024, 102), (1024,), (34, 1024), (34,)]
    x, xyz = torch.randn(4, 17, 3), torch.randn(4, 17, 3)
    assert head(x, xyz).shape == (4, 17, 3)
    s = head.weights(x, xyz)
    assert s.shape == (4, 17, 2) and ((s > 0) & (s < 1)).all()
    assert RefineHead(16, hidden=8)(torch.randn(2, 16, 3), torch.randn(2, 16, 3)).shape == (2, 16, 3)
    with pytest.raises(ValueError, match=r"expects x and xyz of shape \(B, 17, 3\)"):
        head(torch.randn(4, 16, 3), torch.randn(4, 16, 3))
    with pytest.raises(ValueError, match="dropout"):
        RefineHead(17, dropout=1.0)


def test_backprojection_is_the_pixel_pinhole_inverse():
    """The true root-relative depths and pelvis depth give back the true root-relative pose: the normalised
    camera does what ``(u_px - c_px) * Z / f_px`` does in pixels."""
    pose, uv, camera, root_z = pinhole_inputs(np.random.default_rng(1))
    rel = pose - pose[:, :1]
    xyz = backproject(t(uv), t(rel[..., 2]), t(root_z), t(camera))
    np.testing.assert_allclose(xyz.numpy(), rel, atol=1e-12)
    # by hand for one joint: pixel back-projection at Z = z_rel + Z_root, minus the pelvis's
    px = uv[0, 5] * WIDTH / 2 + np.array([WIDTH / 2, HEIGHT / 2])
    z = rel[0, 5, 2] + root_z[0]
    pelvis = (uv[0, 0] * WIDTH / 2 + np.array([WIDTH / 2, HEIGHT / 2]) - C) * root_z[0] / F
    np.testing.assert_allclose(xyz[0, 5, :2].numpy(), (px - C) * z / F - pelvis, atol=1e-12)
    # the root joint's predicted depth is ignored: the pelvis sits at root_z (the reference's z_global[:, :, 0])
    moved = t(rel[..., 2]).clone()
    moved[:, 0] = 0.7
    np.testing.assert_allclose(backproject(t(uv), moved, t(root_z), t(camera)).numpy(), rel, atol=1e-12)


def test_zeroed_last_layer_averages_the_two_estimates():
    """Hand-checkable: a zeroed last layer gives the weight sigmoid(0) = 1/2 everywhere, so x, y are the mean of
    the lifter's and the back-projection's, and z is the lifter's."""
    head = RefineHead(17).double().eval()
    torch.nn.init.zeros_(head.post_refine[3].weight)
    torch.nn.init.zeros_(head.post_refine[3].bias)
    x, xyz = torch.randn(6, 17, 3, dtype=torch.float64), torch.randn(6, 17, 3, dtype=torch.float64)
    out = head(x, xyz)
    torch.testing.assert_close(out[..., :2], (x[..., :2] + xyz[..., :2]) / 2)
    torch.testing.assert_close(out[..., 2], x[..., 2])


def test_a_prediction_consistent_with_its_2d_is_left_unchanged():
    """Whatever the weights: when the lifter's pose projects onto its 2D input at the true pelvis depth, the
    back-projection equals it and the blend returns it. The head at its (PyTorch default) initialisation
    does change any other prediction (the weights are near 1/2, as in the reference)."""
    pose, uv, camera, root_z = pinhole_inputs(np.random.default_rng(2))
    rel = t(pose - pose[:, :1])
    torch.manual_seed(0)
    head = RefineHead(17).double().eval()
    torch.testing.assert_close(refine_centre(head, rel, t(uv), t(root_z), t(camera)).double(), rel, atol=1e-6, rtol=0)
    off = rel + torch.tensor([0.05, -0.03, 0.0], dtype=torch.float64)
    off[:, 0] = 0.0
    assert not torch.allclose(refine_centre(head, off, t(uv), t(root_z), t(camera)).double(), off, atol=1e-3)


def test_training_the_head_lowers_the_refine_loss():
    """A few Adam steps on fixed noisy predictions: the refined MPJPE falls below its start and below the
    unrefined centre's (the back-projection carries the true x, y that the head learns to trust)."""
    pose, uv, camera, root_z = pinhole_inputs(np.random.default_rng(3), b=64)
    truth = torch.from_numpy(pose - pose[:, :1]).float()
    noisy = truth + torch.from_numpy(np.random.default_rng(4).normal(0, 0.05, truth.shape)).float()
    noisy[:, :, 2] = truth[:, :, 2]  # depth right, x, y noisy: the back-projection is then exact
    target, valid = truth[:, None].expand(-1, 3, -1, -1), torch.ones(64, 3, dtype=torch.bool)
    torch.manual_seed(0)
    head = RefineHead(17, hidden=64, dropout=0.0)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        refined = refine_centre(head, noisy, torch.from_numpy(uv), torch.from_numpy(root_z), torch.from_numpy(camera))
        loss, parts = refine_loss(refined, noisy, target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(parts) == {"mpjpe_refined", "mpjpe_centre"}
    assert losses[-1] < 0.5 * losses[0] and losses[-1] < 0.5 * parts["mpjpe_centre"].item()


def test_stream_carries_the_camera_and_pelvis_through_the_flip(data):
    """Every window's centre frame back-projects onto its 3D with the streamed camera and pelvis depth,
    mirrored windows included (c_x and the pelvis x negated with the 2D and 3D); some windows are mirrored."""
    loader = make_loader(
        data / "shards",
        LoaderOptions(datasets=["h36m"], clip_len=9, batch_size=32, flip=True, with_camera=True, resampled=False),
    )
    batch = next(iter(loader))
    assert batch["camera"].shape == (32, 9, 4) and batch["root"].shape == (32, 9, 3)
    cam = normalize_camera(F, C, WIDTH, HEIGHT).astype(np.float32)
    cx = batch["camera"][:, :, 2].numpy()
    mirrored = np.isclose(cx, -cam[2]).all(1)
    assert mirrored.any() and (~mirrored).any() and (np.isclose(cx, cam[2]).all(1) | mirrored).all()
    p3 = batch["pose3d"].double()
    xyz = backproject(
        batch["pose2d"][:, 4, :, :2].double(), p3[:, 4, :, 2], batch["root"][:, 4, 2].double(), batch["camera"][:, 4]
    )
    torch.testing.assert_close(xyz, p3[:, 4], atol=2e-5, rtol=0)
    assert (batch["root"][:, :, 0].numpy()[mirrored] < 0).all()  # the pelvis sits at x = +0.3 m before mirroring
    assert "camera" not in next(iter(make_loader(data / "shards", LoaderOptions(datasets=["h36m"], clip_len=9))))


def config(data, out, *overrides):
    return load_config(
        None,
        [
            f"eval.store={data / 'store'}",
            f"data.shards={data / 'shards'}",
            f"train.out={out}",
            "data.batch_size=16",
            "train.log_every=1",
            "train.checkpoint_every=1000",
            *overrides,
        ],
    )


def tiny_lifter_file(path: Path) -> Path:
    torch.manual_seed(0)
    return save_lifter(path, Lifter(preset("tiny", frames=9)).eval(), meta={"steps": 0})


def test_refine_stage_trains_lifter_and_head_and_evaluates_both(data, tmp_path, capsys):
    start = tiny_lifter_file(tmp_path / "main" / "lifter.pt")
    with one_rank_env():
        summary = train(
            config(
                data,
                tmp_path / "run",
                f"model.refine={tmp_path / 'main'}",
                "model.refine_hidden=64",
                "train.max_steps=40",
                "train.lr=1e-3",
            ),
            progress=False,
        )
    assert summary["refine_from"] == str(tmp_path / "main") and summary["steps"] == 40
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"mpjpe_refined", "mpjpe_centre"} <= set(records[0])
    assert records[0]["loss"] == records[0]["mpjpe_refined"]  # the refined centre frame's MPJPE is the loss
    first, last = np.mean([r["loss"] for r in records[:5]]), np.mean([r["loss"] for r in records[-5:]])
    assert last < 0.8 * first
    lifter, _ = load_lifter(tmp_path / "run")
    before, _ = load_lifter(start)
    assert isinstance(lifter.refiner, RefineHead) and lifter.refiner.hidden == 64
    assert not torch.equal(lifter.encoder_2d.fc.weight, before.encoder_2d.fc.weight)  # not frozen: trained too
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["refine"] is True
    h36m = results["h36m"]
    assert h36m["unrefined"]["average"]["frames"] == h36m["average"]["frames"] == 40
    # the headline is the refined prediction's error; the unrefined one is the lifter's own, recomputed here
    seq = MotionStore.open(str(data / "store"))["h36m"]["S11_Eating_1"]
    pred, truth = predict_store_sequence(lifter, seq, 9, H36M17)
    refined = refine_sequence(lifter.refiner, seq, pred, H36M17)
    assert h36m["unrefined"]["average"]["mpjpe"] == pytest.approx(np.linalg.norm(pred - truth, axis=-1).mean())
    assert h36m["average"]["mpjpe"] == pytest.approx(np.linalg.norm(refined - truth, axis=-1).mean())
    assert h36m["average"]["mpjpe"] != pytest.approx(h36m["unrefined"]["average"]["mpjpe"])
    assert "refine head: MPJPE" in capsys.readouterr().out


def test_refine_sequence_by_hand(data):
    """Evaluation's refinement of a store sequence with a zeroed last layer: the mean of the prediction and the
    pixel back-projection of the sequence's 2D at the predicted depth plus the true pelvis depth, in mm."""
    seq = MotionStore.open(str(data / "store"))["h36m"]["S11_Eating_1"]
    head = RefineHead(17, hidden=8).eval()
    torch.nn.init.zeros_(head.post_refine[3].weight)
    torch.nn.init.zeros_(head.post_refine[3].bias)
    rng = np.random.default_rng(5)
    pred = rng.normal(0, 300, (40, 17, 3))
    pred[:, 0] = 0.0
    z = pred[..., 2] / 1000 + seq.pose3d[:, :1, 2].astype(np.float64)
    xy = (seq.pose2d[..., :2].astype(np.float64) - C) * z[..., None] / F
    xy = (xy - xy[:, :1]) * 1000
    expected = np.concatenate([(pred[..., :2] + xy) / 2, pred[..., 2:]], -1)
    np.testing.assert_allclose(refine_sequence(head, seq, pred, H36M17), expected, atol=0.05)  # float32 inside
    with pytest.raises(RuntimeError, match="evaluation mode"):
        refine_sequence(head.train(), seq, pred, H36M17)


def test_lifter_file_round_trip_keeps_the_head(tmp_path):
    torch.manual_seed(0)
    lifter = Lifter(preset("tiny", frames=9)).eval()
    lifter.refiner = RefineHead(17, hidden=32, dropout=0.25).eval()
    path = save_lifter(tmp_path / "lifter.pt", lifter)
    blob = torch.load(path, weights_only=True)  # plain values and tensors only
    assert blob["refine"] == {"hidden": 32, "dropout": 0.25}
    loaded, _ = load_lifter(path)
    assert describe(loaded) == describe(lifter) and loaded.refiner.dropout == 0.25
    for key, value in lifter.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    x, xyz = torch.randn(3, 17, 3), torch.randn(3, 17, 3)
    torch.testing.assert_close(loaded.refiner(x, xyz), lifter.refiner(x, xyz))
    plain = save_lifter(tmp_path / "plain.pt", Lifter(preset("tiny", frames=9)))
    assert "refine" not in torch.load(plain, weights_only=True) and load_lifter(plain)[0].refiner is None


def test_refine_options_refused(tmp_path):
    with pytest.raises(ValueError, match=r"model\.init: a refine stage starts from the finetuned lifter"):
        load_config(None, ["model.refine=x.pt", "model.init=pre.pt"])
    with pytest.raises(ValueError, match=r"model\.channels: a refine stage"):
        load_config(None, ["model.refine=x.pt", "model.channels=8"])
    with pytest.raises(ValueError, match=r"model\.refine_dropout must be in \[0, 1\)"):
        load_config(None, ["model.refine_dropout=1.0"])
    tiny_lifter_file(tmp_path / "lifter.pt")
    cfg = load_config(None, [f"model.refine={tmp_path}", "model.backbone=videopose3d"])
    with pytest.raises(ValueError, match=r"its lifter's backbone is mpm, but model\.backbone is videopose3d"):
        build_lifter(cfg)
    lifter, meta = build_lifter(load_config(None, [f"model.refine={tmp_path / 'lifter.pt'}"]))
    assert lifter.training and lifter.refiner.hidden == 1024 and meta["loaded"] == len(lifter.state_dict()) - 4


def reference_module(root: Path, relative: str):
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_")[:-3], root / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equals_the_reference_on_the_same_weights(monkeypatch):
    """Against the released code: ``get_uvd2xyz`` on the reference's inputs (uvd: the 2D and the predicted depth,
    gt_3D with the absolute pelvis in joint 0, cam = [f, c, ...] normalised) and ``refine`` with our weights
    (its forward moves a tensor to CUDA: made a no-op here)."""
    path = os.environ.get("MPM")
    if not path:
        pytest.skip("MPM is not set: the comparison with the reference needs a checkout of github.com/vvirgooo2/MPM")
    root = Path(path)
    if not (root / "model" / "component" / "refine.py").is_file():
        pytest.skip(f"MPM={path} has no model/component/refine.py")
    camera_mod = reference_module(root, "common/camera.py")
    refine_mod = reference_module(root, "model/component/refine.py")
    pose, uv, camera, root_z = pinhole_inputs(np.random.default_rng(6), b=7)
    rel = pose - pose[:, :1]
    pred = rel + np.random.default_rng(7).normal(0, 0.03, rel.shape)
    uvd = t(np.concatenate([uv, pred[..., 2:]], -1))[:, None].float()
    gt = rel.copy()
    gt[:, 0] = pose[:, 0]  # VideoPose3D's layout: root-relative joints, the absolute pelvis in joint 0
    cam = t(np.concatenate([camera, np.zeros((7, 5))], -1)).float()
    theirs = camera_mod.get_uvd2xyz(uvd, t(gt)[:, None].float(), cam)[:, 0]
    ours = backproject(t(uv).float(), t(pred[..., 2]).float(), t(root_z).float(), t(camera).float())
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    class Opt:
        out_channels, in_channels, n_joints = 3, 2, 17

    reference = refine_mod.refine(Opt()).eval()
    head = RefineHead(17).eval()
    assert reference.load_state_dict(head.state_dict()).missing_keys == []  # the same parameter names
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    x = t(pred).float()
    torch.testing.assert_close(reference(x[:, None], ours[:, None])[:, 0], head(x, ours))
