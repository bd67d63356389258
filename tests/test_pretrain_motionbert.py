"""MotionBERT's pretraining objective (``pretrain/motionbert.py``, ``objective.kind: motionbert``): its loss terms
against hand-computed values, its noise model and masks against the reference's parameters (seeded draws), the
inputs it makes of each kind of window, a tiny DSTformer pretrained through ``python -m pretrain`` on generated
shards (metrics, resume, export), and ``python -m finetune --init`` starting a DSTformer from that export."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from finetune_fakes import one_rank_env
from shards_fakes import CLIP

import finetune.__main__ as finetune_cli
import pretrain.__main__ as pretrain_cli
from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import load_lifter
from finetune.config import load_config as load_finetune_config
from finetune.train import build_lifter, param_groups
from pretrain import backbones
from pretrain.config import load_config
from pretrain.export import load_pretrained, load_pretrained_backbone, save_export
from pretrain.model import MPM, preset
from pretrain.motionbert import (
    NOISE_MEAN,
    NOISE_STD,
    NOISE_WEIGHT,
    MotionBERTConfig,
    keep_mask,
    make_inputs,
    motionbert_loss,
    n_mpjpe,
    noise_offsets,
    noise_parameters,
    offset_confidence,
    velocity_error,
    weighted_2d_error,
)
from pretrain.objective import masked_mpjpe
from training.runlog import read_metrics

SMALL = {"channels": 16, "layers": 1, "heads": 2, "dim_rep": 16}

# the reference's noise parameters (Walter0807/MotionBERT dccfe7b, lib/data/augmentation.py Augmenter2D and
# params/d2c_params.pkl, read here independently of the module under test)
KEYFRAMES, UNIFORM_RANGE, JITTER_STD = 27, 0.06, 0.002
D2C = {"a": 0.028, "b": 1.1, "m": -0.0045857, "s": 0.1431057}  # a tiny DSTformer's constructor arguments


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# --- loss terms ----------------------------------------------------------------------------------------------


def test_loss_terms_against_hand_computed_values():
    one = torch.ones(1, 1, dtype=torch.bool)
    p = torch.tensor([[[[1.0, 0, 0], [0, 1, 0]]]])  # one window, one frame, two joints
    t = torch.tensor([[[[3.0, 0, 0], [0, 0, 1]]]])
    # MPJPE: |(-2, 0, 0)| = 2 and |(0, 1, -1)| = sqrt 2
    assert masked_mpjpe(p, t, one).item() == pytest.approx((2 + math.sqrt(2)) / 2)
    # N-MPJPE: s = mean <t, p> / mean |p|^2 = 1.5 / 1; |1.5 - 3| = 1.5 and |(0, 1.5, -1)| = sqrt 3.25
    assert n_mpjpe(p, t, one).item() == pytest.approx((1.5 + math.sqrt(3.25)) / 2)
    # the optimal scale makes any positive multiple of the target free
    g = torch.randn(2, 4, 17, 3)
    assert n_mpjpe(2.0 * g, g, torch.ones(2, 4, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-6)
    # and the reference's formula (lib/model/loss.py n_mpjpe) on every frame agrees
    q = g + 0.1 * torch.randn_like(g)
    scale = (g * q).sum(3, keepdim=True).mean(2, keepdim=True) / (q**2).sum(3, keepdim=True).mean(2, keepdim=True)
    reference = torch.linalg.vector_norm(scale * q - g, dim=-1).mean()
    assert n_mpjpe(q, g, torch.ones(2, 4, dtype=torch.bool)).item() == pytest.approx(reference.item(), rel=1e-5)

    # velocity: x of a joint over three frames 0, 1, 3 against 0, 1, 2: differences (1, 2) vs (1, 1)
    pv, tv = torch.zeros(1, 3, 1, 3), torch.zeros(1, 3, 1, 3)
    pv[0, :, 0, 0], tv[0, :, 0, 0] = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.0, 1.0, 2.0])
    assert velocity_error(pv, tv, torch.ones(1, 3, dtype=torch.bool)).item() == pytest.approx(0.5)
    assert velocity_error(pv, tv, torch.tensor([[True, True, False]])).item() == pytest.approx(0.0)  # one pair left
    assert velocity_error(pv[:, :1], tv[:, :1], torch.ones(1, 1, dtype=torch.bool)).item() == 0.0

    # 2D term: root-relative 2D u = (0, 0), (1, 0) with confidence 1, 0.5
    pose2d = torch.tensor([[[[0.2, 0.3, 1.0], [1.2, 0.3, 0.5]]]])
    orthogonal = torch.tensor([[[[0.0, 0, 0], [0, 1, 0]]]])  # best scale 0: error |(0 - 1, 0) * 0.5| / 2 joints
    assert weighted_2d_error(orthogonal, pose2d, one).item() == pytest.approx(0.25)
    doubled = torch.tensor([[[[0.5, 0.5, 7.0], [2.5, 0.5, -1.0]]]])  # x, y twice u: scale 1/2 fits exactly
    assert weighted_2d_error(doubled, pose2d, one).item() == pytest.approx(0.0, abs=1e-7)
    no_root = pose2d.clone()
    no_root[..., 0, 2] = 0.0  # a frame whose root has no confidence is not scored
    assert weighted_2d_error(orthogonal, no_root, one).item() == 0.0


class Fixed(torch.nn.Module):
    """A stand-in backbone: returns a learned (B, T, J, 3) tensor and records its input."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = torch.nn.Parameter(out.clone())
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return self.out


def batch_of(b: int = 6, t: int = 9, j: int = 17, seed: int = 0) -> dict[str, torch.Tensor]:
    """Windows 0-1: paired, ground-truth 2D (confidence 1); 2: 3D without pairs; 3: paired, detections
    (confidence 0.7); 4: 2D only, detections; 5: 2D only, ground truth; frame 8 of window 0 has no 2D."""
    g = torch.Generator().manual_seed(seed)
    pose3d = torch.randn(b, t, j, 3, generator=g) * 0.3
    pose3d[:, :, 0] = 0.0
    pose2d = torch.cat([torch.randn(b, t, j, 2, generator=g) * 0.2, torch.ones(b, t, j, 1)], dim=-1)
    pose2d[3:5, ..., 2] = 0.7
    valid2d, valid3d = torch.ones(b, t, dtype=torch.bool), torch.ones(b, t, dtype=torch.bool)
    valid3d[4:], valid2d[0, 8] = False, False
    pose3d[4:] = 0.0
    pose2d[0, 8] = 0.0
    paired = torch.tensor([True, True, False, True, True, True])
    return {"pose2d": pose2d, "pose3d": pose3d, "valid2d": valid2d, "valid3d": valid3d, "paired": paired}


def test_each_kind_of_window_gets_the_reference_input():
    batch = batch_of()
    clean = MotionBERTConfig(noise=False, mask_ratio=0.0, mask_t_ratio=0.0)
    inputs = make_inputs(batch, clean, torch.Generator().manual_seed(1))
    assert inputs.is3d.tolist() == [True, True, True, True, False, False]
    assert inputs.is2d.tolist() == [False, False, False, False, True, True]
    assert inputs.from_pose2d.tolist() == [True, True, False, False, False, False]
    x = inputs.x
    # paired ground-truth 2D: the pose2d x, y with confidence 1 (the reference's Human3.6M input)
    assert torch.equal(x[1, ..., :2], batch["pose2d"][1, ..., :2]) and bool((x[1, ..., 2] == 1).all())
    assert bool((x[0, 8] == 0).all())  # a frame without 2D enters as zeros
    # 3D without pairs, or detections: the orthographic projection, 0.298 per metre (the reference's AMASS input)
    for w in (2, 3):
        torch.testing.assert_close(x[w, ..., :2], 0.298 * batch["pose3d"][w, ..., :2])
        assert bool((x[w, ..., 2] == 1).all())
    # 2D windows: their own 2D and confidence
    assert torch.equal(x[4:], batch["pose2d"][4:])
    # with the noise model: every 3D window and the ground-truth 2D window are noised, the detections are not
    noisy = make_inputs(batch, MotionBERTConfig(mask_ratio=0.0, mask_t_ratio=0.0), torch.Generator().manual_seed(1))
    assert torch.equal(noisy.x[4], batch["pose2d"][4])
    for w in (0, 1, 2, 3, 5):
        assert not torch.equal(noisy.x[w, ..., :2], x[w, ..., :2]) and bool((noisy.x[w, ..., 2] < 1).any())
        assert (noisy.x[w, :8, :, :2] - x[w, :8, :, :2]).abs().max() < 0.1  # offsets of a few hundredths


def test_the_loss_is_the_weighted_sum_of_its_terms():
    batch = batch_of()
    out = torch.randn(6, 9, 17, 3, generator=torch.Generator().manual_seed(2)) * 0.3
    cfg = MotionBERTConfig(lambda_2d=3.0)
    model = Fixed(out)
    loss, parts = motionbert_loss(model, batch, cfg, torch.Generator().manual_seed(3))
    p, g, v = out[:4], batch["pose3d"][:4], batch["valid3d"][:4]
    expect = {
        "loss_3d_pos": masked_mpjpe(p, g, v),
        "loss_3d_scale": n_mpjpe(p, g, v),
        "loss_3d_velocity": velocity_error(p, g, v),
        "loss_2d_proj": weighted_2d_error(out[4:], batch["pose2d"][4:], batch["valid2d"][4:]),
    }
    assert parts.keys() == expect.keys()
    for key, value in expect.items():
        assert parts[key].item() == pytest.approx(value.item(), rel=1e-6), key
    total = expect["loss_3d_pos"] + 0.5 * expect["loss_3d_scale"] + 20 * expect["loss_3d_velocity"]
    assert loss.item() == pytest.approx((total + 3.0 * expect["loss_2d_proj"]).item(), rel=1e-6)
    loss.backward()
    assert model.out.grad is not None and model.out.grad[4:].abs().sum() > 0  # the 2D windows are trained
    # before curriculum_2d the 2D windows do not count; a batch of 2D windows alone still back-propagates
    later = MotionBERTConfig(curriculum_2d=5)
    _, parts = motionbert_loss(Fixed(out), batch, later, torch.Generator(), step=4)
    assert parts["loss_2d_proj"].item() == 0.0
    only2d = {k: v[4:] for k, v in batch.items()}
    loss, _ = motionbert_loss(Fixed(out[4:]), only2d, later, torch.Generator(), step=0)
    assert loss.item() == 0.0 and loss.requires_grad
    empty = {**only2d, "valid2d": torch.zeros(2, 9, dtype=torch.bool)}
    with pytest.raises(ValueError, match="without a valid 2D or 3D frame"):
        motionbert_loss(Fixed(out[4:]), empty, cfg, torch.Generator())


# --- noise and masks against the reference's parameters --------------------------------------------------------


def test_noise_model_follows_the_reference_parameters():
    # spot values of params/synthetic_noise.pth (float64): the tables are its joints, in the Human3.6M order
    assert len(NOISE_MEAN) == len(NOISE_STD) == len(NOISE_WEIGHT) == 17
    assert NOISE_WEIGHT[0] == pytest.approx(0.99874542) and NOISE_WEIGHT[13] == pytest.approx(0.70277023)
    assert NOISE_STD[6] == pytest.approx((0.00950580, 0.00562537)) and NOISE_MEAN[8][1] == pytest.approx(-0.00650841)
    assert sum(NOISE_WEIGHT) == pytest.approx(15.07921505) and sum(map(sum, NOISE_STD)) == pytest.approx(0.19603688)
    gen = torch.Generator().manual_seed(0)
    b, t = 4000, 2 * (KEYFRAMES - 1) + 1  # every other frame a key frame
    key, offsets = noise_offsets(b, t, 17, gen)
    assert key.shape == (b, KEYFRAMES, 17, 2) and offsets.shape == (b, t, 17, 2)
    n = b * KEYFRAMES
    mean, std, weight = (torch.tensor(v, dtype=torch.float64) for v in (NOISE_MEAN, NOISE_STD, NOISE_WEIGHT))
    half, tau = UNIFORM_RANGE / 2, 0.025
    k = key.double()
    for j in range(17):
        w = weight[j].item()
        for c in range(2):
            mu, sd = mean[j, c].item(), std[j, c].item()
            d = k[:, :, j, c]
            # a Gaussian(mean, std) with probability w, else uniform on +-0.03
            assert d.mean().item() == pytest.approx(w * mu, abs=5 * math.sqrt(3e-4 / n))
            second = w * (sd**2 + mu**2) + (1 - w) * half**2 / 3
            assert (d**2).mean().item() == pytest.approx(second, rel=0.03)
            beyond = w * (1 - _phi((tau - mu) / sd) + _phi((-tau - mu) / sd)) + (1 - w) * (half - tau) / half
            assert (d.abs() > tau).double().mean().item() == pytest.approx(beyond, abs=5 * math.sqrt(0.05 / n))
    # key frames land on every other frame and are interpolated linearly between; the jitter has std 0.002
    on_key = offsets[:, ::2] - key
    between = offsets[:, 1::2] - (key[:, :-1] + key[:, 1:]) / 2
    for residual in (on_key, between):
        assert residual.mean().item() == pytest.approx(0.0, abs=1e-5)
        assert residual.std().item() == pytest.approx(JITTER_STD, rel=0.01)
    # the confidence of an offset: a / (d + a) + b d + N(m, s), clipped to [0, 1]
    a, bb, m, s = D2C["a"], D2C["b"], D2C["m"], D2C["s"]
    at = offset_confidence(torch.full((200_000,), 0.1, dtype=torch.float64), gen)
    centre = a / (0.1 + a) + bb * 0.1 + m
    assert at.median().item() == pytest.approx(centre, abs=0.003)
    q1, q3 = torch.quantile(at, torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
    assert q3 - q1 == pytest.approx(2 * 0.6744897 * s, rel=0.02)
    zero = offset_confidence(torch.zeros(200_000, dtype=torch.float64), gen)
    assert (zero == 1.0).double().mean().item() == pytest.approx(1 - _phi(-m / s), abs=0.005)
    assert zero.min() >= 0.0 and zero.max() <= 1.0
    # the 16-joint set (neck/nose dropped) reads the same joints' parameters
    keep = [i for i in range(17) if i != 9]
    for p16, p17 in zip(noise_parameters(16), noise_parameters(17), strict=True):
        assert torch.equal(p16, p17[keep])
    with pytest.raises(ValueError, match="17- or 16-joint"):
        noise_parameters(14)


def test_masks_follow_the_reference_ratios():
    cfg = MotionBERTConfig()
    keep = keep_mask(3000, 40, 17, cfg, torch.Generator().manual_seed(0))
    frame_masked = ~keep.any(-1)
    assert frame_masked.double().mean().item() == pytest.approx(0.1, abs=0.003)  # mask_T_ratio
    joint_masked = (~keep)[~frame_masked].double().mean().item()
    assert joint_masked == pytest.approx(0.05, abs=0.001)  # mask_ratio, in the frames left
    assert (~keep).double().mean().item() == pytest.approx(1 - 0.95 * 0.9, abs=0.003)
    assert torch.equal(keep, keep_mask(3000, 40, 17, cfg, torch.Generator().manual_seed(0)))  # seeded
    assert bool(keep_mask(50, 40, 17, MotionBERTConfig(mask_ratio=0.0, mask_t_ratio=0.0), torch.Generator()).all())
    # a masked joint enters the network as zeros: x, y and confidence
    batch = batch_of()
    x = make_inputs(batch, MotionBERTConfig(noise=False), torch.Generator().manual_seed(4)).x
    zeros = (x == 0).all(-1)
    assert 0.0 < zeros[1:4].double().mean().item() < 0.3
    assert bool((x[1:4][~zeros[1:4]][:, 2] == 1).all())


# --- configuration ---------------------------------------------------------------------------------------------


def test_the_default_objective_is_mpm_and_motionbert_is_a_config_key():
    cfg = load_config(None)
    assert cfg.objective.kind == "mpm" and cfg.model.backbone == "mpm" and cfg.model.network() == preset("mpm")
    mb = load_config(
        None,
        ["objective.kind=motionbert", "model.backbone=dstformer", "model.size=lite", "motionbert.mask_ratio=0.1"],
    )
    net = mb.model.backbone_network()
    assert (net.arguments["channels"], net.arguments["mlp_ratio"], net.frames) == (256, 4.0, 243)
    assert mb.motionbert.mask_ratio == 0.1 and mb.motionbert.lambda_velocity == 20.0
    small = load_config(
        None,
        ["objective.kind=motionbert", "model.backbone=dstformer", "model.arguments={channels: 16, layers: 1}"],
    )
    assert small.model.backbone_network().arguments["channels"] == 16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.backbone=dstformer"], r"objective.kind=mpm pretrains MPM's network"),
        (["objective.kind=motionbert"], r"set model.backbone=dstformer"),
        (["objective.kind=motionbert", "model.backbone=videopose3d"], r"predicts one frame per window"),
        (["objective.kind=motionbert", "model.backbone=dstformer", "model.channels=64"], r"model.arguments"),
        (["objective.kind=motionbert", "model.backbone=dstformer", "model.arguments={depth: 2}"], r"no \['depth'\]"),
        (["model.arguments={channels: 16}"], r"another backbone's constructor arguments"),
        (["objective.kind=motionbert", "model.backbone=dstformer", "model.size=huge"], r"model.size"),
        (["motionbert.mask_t_ratio=1.0"], r"motionbert.mask_t_ratio must be in \[0, 1\)"),
        (["motionbert.lambda_velocity=.nan"], r"motionbert.lambda_velocity"),
        (["motionbert.source_2d=detections"], r"motionbert.source_2d"),
        (["objective.kind=bert"], r"objective.kind='bert'"),
    ],
)
def test_configurations_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


# --- a tiny DSTformer through the pretraining command, resume, export, finetuning --------------------------------


def pretrain_args(shards: Path, mixtures: Path, out: Path, *extra: str) -> list[str]:
    """``python -m pretrain`` arguments of a tiny DSTformer on ``shards`` with MotionBERT's objective, on a mixture
    of Human3.6M pairs (S0), 2D alone (S1, unlabelled) and 3D alone (S2), and AMASS."""
    return [
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--frames",
        str(CLIP),
        "--steps",
        "40",
        "--batch-size",
        "8",
        "--lr",
        "1e-2",
        "--threads",
        "1",
        "--no-progress",
        "--mixture",
        "mb",
        "--set",
        f"data.mixtures_file={mixtures}",
        "--set",
        "objective.kind=motionbert",
        "--set",
        "model.backbone=dstformer",
        "--set",
        "model.arguments={" + ", ".join(f"{k}: {v}" for k, v in SMALL.items()) + "}",
        "--set",
        "train.warmup_steps=2",
        "--set",
        "train.min_lr_ratio=1.0",
        "--set",
        "train.log_every=1",
        "--set",
        "train.checkpoint_every=10",
        *extra,
    ]


@pytest.fixture(scope="module")
def pretrained(built, tmp_path_factory):
    """(shards, mixtures file, run folder, summary) of the tiny DSTformer's 40-step pretraining."""
    shards, _ = built
    root = tmp_path_factory.mktemp("motionbert")
    mixtures = root / "mixtures.json"
    subjects = {"S0": ["2d", "3d", "pairs"], "S1": ["2d"], "S2": ["3d"]}
    mixtures.write_text(json.dumps({"mb": {"h36m": {"subjects": subjects}, "amass": 1.0}}))
    with one_rank_env():
        summary = pretrain_cli.main(pretrain_args(shards, mixtures, root / "run"))
    return shards, mixtures, root / "run", summary


def test_tiny_dstformer_pretrains_with_every_term_and_exports(pretrained):
    _, _, run, summary = pretrained
    records = read_metrics(run / "metrics.jsonl")
    assert summary["steps"] == 40 and [r["step"] for r in records] == list(range(1, 41))
    terms = ("loss_3d_pos", "loss_3d_scale", "loss_3d_velocity", "loss_2d_proj")
    assert all(math.isfinite(r[k]) for r in records for k in ("loss", *terms))
    assert all(r["loss_3d_pos"] > 0 and r["loss_3d_velocity"] > 0 for r in records)
    assert any(r["loss_2d_proj"] > 0 for r in records)  # the unlabelled subject's 2D windows are scored
    first, last = records[:5], records[-5:]  # it learns: the lift (MPJPE) and the total fall
    for key in ("loss", "loss_3d_pos"):
        assert sum(r[key] for r in last) < 0.9 * sum(r[key] for r in first), key
    config = json.loads((run / "config.json").read_text())
    assert config["objective"]["kind"] == "motionbert" and config["model"]["backbone"] == "dstformer"
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    blob = torch.load(run / "pretrained.pt", weights_only=True)
    assert blob["backbone"] == "dstformer" and blob["objective"] == "motionbert"
    assert blob["arguments"] == backbones.build("dstformer", frames=CLIP, **SMALL).arguments
    name, net = load_pretrained_backbone(run / "pretrained.pt")
    _, from_ckpt = load_pretrained_backbone(run / "checkpoints")
    assert name == "dstformer" and net.state_dict().keys() == blob["state_dict"].keys()
    for key, value in net.state_dict().items():
        assert torch.equal(value, blob["state_dict"][key]) and torch.equal(value, from_ckpt.state_dict()[key]), key
    with pytest.raises(
        ValueError,
        match=r"a dstformer backbone \(objective motionbert\), not MPM's network: it "
        r"initialises finetuning with --backbone dstformer",
    ):
        load_pretrained(run / "pretrained.pt")


def test_a_resumed_run_repeats_the_uninterrupted_one(pretrained, tmp_path):
    shards, mixtures, run, _ = pretrained
    part = tmp_path / "part"
    with one_rank_env():
        assert pretrain_cli.main(pretrain_args(shards, mixtures, part, "--set", "train.stop_after=25"))["steps"] == 25
        (part / "checkpoints" / "latest").write_text("step00000020")  # "killed" before step 25's save
        assert pretrain_cli.main(pretrain_args(shards, mixtures, part, "--resume"))["steps"] == 40
    first, again = read_metrics(run / "metrics.jsonl"), read_metrics(part / "metrics.jsonl")
    assert [r["step"] for r in again] == list(range(1, 41))
    for a, b in zip(first, again, strict=True):
        assert a["data_checksum"] == b["data_checksum"]  # the same data
        for key in ("loss", "loss_3d_pos", "loss_2d_proj"):  # and the same noise and masks
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a["step"], key)


def test_finetuning_starts_a_dstformer_from_the_export(pretrained, tmp_path, capsys):
    shards, _, run, _ = pretrained
    export = run / "pretrained.pt"
    common = ["--shards", str(shards), "--batch-size", "8", "--threads", "1", "--no-progress"]
    cfg = load_finetune_config(None, ["model.backbone=dstformer", f"model.init={export}"])
    lifter, meta = build_lifter(cfg)
    state = torch.load(export, weights_only=True)["state_dict"]
    assert isinstance(lifter, BackboneLifter) and lifter.frames == CLIP and lifter.training
    assert meta == {"init": str(export), "loaded": len(state)}
    own = lifter.backbone.state_dict()
    assert own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in state)  # every weight
    groups = {g["name"]: g for g in param_groups(lifter, 1e-3, 0.5)}
    assert set(groups) == {"pretrained"} and groups["pretrained"]["lr"] == 5e-4

    with one_rank_env():
        summary = finetune_cli.main(
            [*common, "--init", str(export), "--backbone", "dstformer", "--out", str(tmp_path / "ft"),
             "--max-steps", "2", "--set", "evaluate=false", "--set", "train.log_every=1"]
        )  # fmt: skip
    assert summary["loaded"] == len(state) and summary["steps"] == 2
    finetuned, _ = load_lifter(tmp_path / "ft")
    assert finetuned.name == "dstformer" and finetuned.backbone.arguments == lifter.backbone.arguments

    # an export of another network, or a frame count the export lacks, is one line naming the fix
    tiny = preset("tiny", frames=CLIP)
    mpm_export = save_export(tmp_path / "mpm.pt", tiny, MPM(tiny).state_dict())
    refused = [
        (["--init", str(export)], r"a dstformer backbone .*--backbone dstformer"),
        (["--init", str(export), "--backbone", "poseformer"], r"a pretrained dstformer, not a poseformer.*dstformer"),
        (["--init", str(mpm_export), "--backbone", "dstformer"], r"MPM's network .*--backbone mpm"),
        (["--init", str(export), "--backbone", "dstformer", "--frames", "27"], r"model.frames=27: .* of 9 frames"),
    ]
    for flags, message in refused:
        with one_rank_env(), pytest.raises(SystemExit) as exit_info:
            finetune_cli.main([*common, *flags, "--out", str(tmp_path / "refused"), "--set", "evaluate=false"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1, err
        assert err[0].startswith("python -m finetune") and re.search(message, err[0]), err[0]
