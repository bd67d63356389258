"""Data-scaling ablation: real pretrain/finetune subprocesses on a tiny store, nested scales whose window
counts match the manifest, and a rerun after an interruption that redoes only the unfinished scale."""

from __future__ import annotations

import json

import pytest
from launch import DISTRIBUTED_VARS

from experiments import ablate
from finetune.checkpoint import load_lifter
from ingest.camera import h36m_published_cameras
from ingest.h36m import camera_sequences
from ingest.samples.motion import walking_motion
from ingest.skeleton import to_h36m17
from ingest.store import MotionStore
from shards.manifest import load_manifest, mixture_windows
from shards.mixtures import resolve
from shards.writer import build

FRAMES = 9
CONFIG = """\
preset: tiny
model: {frames: 9, channels: 24, dropout: 0.0}
data: {batch_size: 8}
train: {steps: 3, warmup_steps: 1, checkpoint_every: 100, log_every: 1, threads: 1}
"""
FINETUNE = """\
data: {subjects: [S1], batch_size: 8, steps_per_epoch: 2}
train: {epochs: 1}
eval: {cameras: ["54138969"]}
"""


def write_store(path):
    """Human3.6M-like sequences (S1 train, S11 test) and the same kind of motion as 3DHP and AMASS."""
    store = MotionStore.open(str(path))
    cameras = h36m_published_cameras()
    seed = 0
    for dataset, subject, split in [
        ("h36m", "S1", "train"),
        ("h36m", "S11", "test"),
        ("mpi_inf_3dhp", "S1", "train"),
        ("amass", "S1", "train"),
    ]:
        for take in ("Walking 1", "Eating 2", "Greeting 1"):
            seed += 1
            world = to_h36m17(walking_motion(40, seed=seed), "h36m32")
            action, k = take.split()
            meta = {
                "subject": subject,
                "action": action,
                "take": int(k),
                "split": split,
                "source": "generated",
                "dataset": dataset,
            }
            seqs = camera_sequences(world, cameras[subject], meta)
            for s in seqs:
                s.meta["id"] = f"{dataset}_{s.meta['id']}"
            store.write_part(dataset, f"{subject}_{action}", seqs)
        store.write_index(dataset)


@pytest.fixture(scope="module", autouse=True)
def no_rank_variables():
    """The stages run as processes of their own, not as ranks of this one: without the one-rank variables that
    in-process tests leave in os.environ (their process group still holds that port)."""
    with pytest.MonkeyPatch.context() as env:
        for name in DISTRIBUTED_VARS:
            env.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("ablate")
    write_store(root / "store")
    build(str(root / "store"), root / "shards", clip_len=FRAMES, progress=False)
    (root / "config.yaml").write_text(CONFIG)
    (root / "finetune.yaml").write_text(FINETUNE)
    argv = [
        "--shards",
        str(root / "shards"),
        "--store",
        str(root / "store"),
        "--scales",
        "small",
        "large",
        "--out",
        str(root / "out"),
        "--config",
        str(root / "config.yaml"),
        "--finetune-config",
        str(root / "finetune.yaml"),
        "--probe",
        "--lift",
        "--seeds",
        "2",
    ]
    results = ablate.ablate(ablate.parse_args(argv))
    return root, argv, results


@pytest.mark.slow
def test_results_table_and_plot(ablation):
    root, _, results = ablation
    out = root / "out"
    assert [r["scale"] for r in results["scales"]] == ["small", "large"]
    manifest = load_manifest(root / "shards")
    for row in results["scales"]:
        expected = mixture_windows(manifest, resolve(row["scale"]), "train", FRAMES, 1)
        assert row["windows_per_dataset"] == expected and row["windows"] == sum(expected.values())
        assert row["pretrain_steps"] == 3 and row["mpjpe"] > row["p_mpjpe"] > 0
    small, large = results["scales"]
    assert small["windows"] < large["windows"] and set(small["datasets"]) < set(large["datasets"])
    assert results["baseline"]["mpjpe"] > 0
    for row in [*results["scales"], results["baseline"]]:  # two seeds each: their mean and sample sd
        runs = [r["mpjpe"] for r in row["runs"]]
        assert [r["seed"] for r in row["runs"]] == [0, 1] and runs[0] != runs[1]
        assert row["mpjpe"] == pytest.approx(sum(runs) / 2)
        assert row["mpjpe_std"] == pytest.approx(abs(runs[0] - runs[1]) / 2**0.5)
    seed1 = json.loads((out / "small" / "finetune-seed1" / "results.json").read_text())
    assert seed1["train"]["config"]["train"]["seed"] == 1
    assert results["scales"][0]["runs"][1]["mpjpe"] == seed1["h36m"]["average"]["mpjpe"]
    assert json.loads((out / "results.json").read_text()) == results
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == results["regime"] and table[1] == ""  # what the table compares, in one sentence
    assert table[0].startswith("Finetuning sees the 2D-3D pairs of S1 only (1 epoch, batch 8, centre head strided)")
    assert "pretrained 3 steps" in table[0] and "2 finetuning seeds" in table[0]
    table = table[2:]
    assert len(table) == 2 + 2 + 2 + 1 + 2 and table[-3].startswith("| no pretraining |")
    for row in results["scales"]:  # the pretrained network's own lifting, scored before finetuning
        lift = json.loads((out / row["scale"] / "pretrain" / "lift" / "results.json").read_text())
        assert lift["train"] == {
            "init": str(out / row["scale"] / "pretrain" / "pretrained.pt"),
            "steps": 0,
            "bn_shards": str(root / "shards"),
        }
        assert row["pretrained_lift"]["mpjpe"] == lift["h36m"]["average"]["mpjpe"] > 0
    assert table[-2].startswith("| probe: shared layers frozen, large weights |")
    assert " ± " in table[2] and " ± " in table[-3]
    assert table[-1].startswith("| probe: shared layers frozen, random weights |")
    for name, init in (("large", str(out / "large" / "pretrain" / "pretrained.pt")), ("random", None)):
        probe = json.loads((out / "probe" / name / "results.json").read_text())
        assert probe["train"]["init"] == init and probe["train"]["config"]["model"]["freeze_shared"]
        assert probe["train"]["config"]["data"]["subjects"] == ["S1"]
        assert results["probes"][name]["mpjpe"] == probe["h36m"]["average"]["mpjpe"]
    assert (out / "data_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the baseline and the random probe are the pretrained lifters' twins: the config's sizes, not the preset's
    pretrained = load_lifter(out / "large" / "finetune")[0].cfg
    assert (pretrained.channels, pretrained.dropout) == (24, 0.0)
    for folder in (out / "baseline" / "finetune", out / "probe" / "random"):
        assert load_lifter(folder)[0].cfg == pretrained
    for scale in ("small", "large"):
        assert (out / scale / "pretrain" / "pretrained.pt").exists()


@pytest.mark.slow
def test_rerun_redoes_only_the_unfinished_scale(ablation):
    root, argv, results = ablation
    (root / "out" / "large" / "finetune" / "results.json").unlink()  # interrupted before evaluation ended
    ran = []

    def recording(cmd):
        ran.append(cmd)
        ablate.run_command(cmd)

    again = ablate.ablate(ablate.parse_args(argv), run=recording)
    assert len(ran) == 1 and ran[0][2] == "finetune" and str(root / "out" / "large" / "finetune") in ran[0]
    assert [r["windows"] for r in again["scales"]] == [r["windows"] for r in results["scales"]]
    assert again["scales"][0] == results["scales"][0]  # the finished scale is read back, not redone


def test_epochs_give_steps_per_scale():
    # 2 passes over 1000 windows at 16 windows per step and 2 ranks: ceil(2000 / 32) = 63 steps.
    assert ablate.pretrain_steps(1000, 2.0, 500, 16, 2) == 63
    assert ablate.pretrain_steps(1000, None, 500, 16, 2) == 500  # compute matched: the same steps


@pytest.mark.slow
def test_pretrained_from_finetunes_an_earlier_ablations_networks(ablation, tmp_path):
    """Another finetuning regime of the same networks: no pretraining runs, each scale's finetuning starts from
    the earlier ablation's pretrained.pt, and a scale that ablation lacks is refused naming the missing file."""
    root, argv, _ = ablation
    ran = []

    def recording(cmd):
        ran.append(cmd)
        ablate.run_command(cmd)

    other = [*argv[: argv.index("--out")], "--out", str(tmp_path / "full"), *argv[argv.index("--out") + 2 :]]
    other = [a for a in other if a != "--probe"]
    other[other.index("--seeds") + 1] = "1"
    earlier = root / "out" / "large" / "pretrain" / "pretrained.pt"
    earlier_lift = (root / "out" / "large" / "pretrain" / "lift" / "results.json").read_bytes()
    results = ablate.ablate(ablate.parse_args([*other, "--pretrained-from", str(root / "out")]), run=recording)
    # per scale its own lift (written here) and finetuning, then the baseline: nothing pretrained again
    assert [c[2] for c in ran] == ["finetune.evaluate", "finetune"] * 2 + ["finetune"]
    assert ran[3][ran[3].index("--init") + 1] == str(earlier) and results["scales"][1]["pretrained"] == str(earlier)
    assert (tmp_path / "full" / "large" / "pretrain" / "lift" / "results.json").is_file()
    assert not (tmp_path / "full" / "large" / "pretrain" / "pretrained.pt").exists()
    assert (root / "out" / "large" / "pretrain" / "lift" / "results.json").read_bytes() == earlier_lift
    missing = [*other, "--scales", "base", "--pretrained-from", str(root / "out")]
    with pytest.raises(FileNotFoundError, match=r"base/pretrain/pretrained.pt: --pretrained-from .* holds no"):
        ablate.ablate(ablate.parse_args(missing), run=recording)
