"""``python -m shards build / verify / inspect`` on a small generated store."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile

import numpy as np
import pytest
from invariants import sequence_windows
from shards_fakes import HEIGHT, LAYOUT, WIDTH, make_store

from ingest.store import MotionStore
from shards.__main__ import main
from shards.manifest import load_manifest, mixture_windows, verify
from shards.mixtures import resolve, selection_value
from shards.writer import build

SEGMENT, CLIP = 20, 9


@pytest.fixture(scope="module")
def built(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("shards_build")
    sequences = make_store(root / "store")
    assert (
        main(
            [
                "build",
                "--store",
                str(root / "store"),
                "--out",
                str(root / "shards"),
                "--segment-len",
                str(SEGMENT),
                "--clip-len",
                str(CLIP),
                "--shard-size",
                "30000",
                "--count-clip-lens",
                "1",
                "5",
            ]
        )
        == 0
    )
    return root, sequences


def read_tar(path):
    """{key: {member suffix: bytes}} of one shard."""
    out = {}
    with tarfile.open(path) as tar:
        for m in tar:
            key, suffix = m.name.split(".", 1)
            out.setdefault(key, {})[suffix] = tar.extractfile(m).read()
    return out


def test_manifest_counts_match_the_store(built, capsys):
    root, sequences = built
    assert main(["inspect", str(root / "shards")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["dataset", "split", "shards"] and len(table) == 1 + len(LAYOUT)
    manifest = load_manifest(root / "shards")
    assert manifest["count_clip_lens"] == [1, 5, CLIP]
    for (dataset, split), lengths in LAYOUT.items():
        t = manifest["totals"][dataset][split]
        assert t["sequences"] == len(lengths)
        assert t["short"] == sum(n < CLIP for n in lengths)
        for clip in (1, 5, CLIP):
            assert t["windows"][str(clip)] == sum(sequence_windows(n, clip) for n in lengths)
        # frames: every segment of L frames, consecutive ones overlapping by CLIP - 1
        step = SEGMENT - CLIP + 1
        expected = sum(n if n <= SEGMENT else n + (-(-(n - SEGMENT) // step)) * (CLIP - 1) for n in lengths)
        assert t["frames"] == expected
    for name, rec in manifest["shards"].items():
        data = (root / "shards" / name).read_bytes()
        assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["bytes"] == len(data)
        assert name == f"{rec['dataset']}/{rec['split']}-{int(name[-10:-4]):06d}.tar"
    assert sum(r["dataset"] == "h36m" and r["split"] == "train" for r in manifest["shards"].values()) > 4


def test_samples_hold_the_store_frames(built):
    root, sequences = built
    checked = 0
    for path in sorted((root / "shards" / "mpi_inf_3dhp").glob("train-*.tar")):
        for key, sample in read_tar(path).items():
            assert "." not in key
            meta = json.loads(sample["meta.json"])
            seq = sequences[meta["id"]]
            sl = slice(meta["start"], meta["stop"])
            p2 = np.load(io.BytesIO(sample["pose2d.npy"]))
            p3 = np.load(io.BytesIO(sample["pose3d.npy"]))
            root3 = np.load(io.BytesIO(sample["root.npy"]))
            pixels = seq.pose2d[sl].astype(np.float64)
            expected2 = np.stack(
                [pixels[..., 0] / WIDTH * 2 - 1, pixels[..., 1] / WIDTH * 2 - HEIGHT / WIDTH, pixels[..., 2]], axis=-1
            )
            valid = seq.frames["valid"][sl]
            np.testing.assert_allclose(p2[valid], expected2[valid], atol=1e-6)
            np.testing.assert_allclose((p3 + root3[:, None])[valid], seq.pose3d[sl][valid], atol=1e-6)
            mask = np.ones(len(p2), bool)
            for a, b in meta["invalid3d"]:
                mask[a:b] = False
            assert (mask == valid).all() and meta["valid_mask"] is True
            assert meta["fps"] == 50 and meta["width"] == WIDTH and meta["split"] == "train"
            checked += 1
    assert checked >= len(LAYOUT[("mpi_inf_3dhp", "train")])


def test_verify_catches_flipped_byte_and_missing_shard(built, tmp_path, capsys):
    root, _ = built
    copy = tmp_path / "shards"
    shutil.copytree(root / "shards", copy)
    assert verify(copy) == []
    assert main(["verify", str(copy)]) == 0
    names = sorted(load_manifest(copy)["shards"])
    flipped, removed = names[1], names[-1]
    data = bytearray((copy / flipped).read_bytes())
    data[len(data) // 3] ^= 0x01
    (copy / flipped).write_bytes(bytes(data))
    (copy / removed).unlink()
    problems = verify(copy)
    assert len(problems) == 2
    assert problems[0].startswith(f"{flipped}: sha256") and problems[1] == f"{removed}: missing"
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert flipped in out and removed in out


def test_inspect_mixture_counts(built, capsys):
    root, sequences = built
    manifest = load_manifest(root / "shards")
    for name in ("small", "base", "large"):
        shares = resolve(name)
        expected = {
            d: sum(
                sequence_windows(len(s), CLIP)
                for s in sequences.values()
                if s.meta["split"] == "train"
                and s.meta["id"].split("_train")[0] == d
                and selection_value(s.meta["id"]) < share.fraction
            )
            for d, share in shares.items()
        }
        assert mixture_windows(manifest, shares) == expected
        capsys.readouterr()
        assert main(["inspect", str(root / "shards"), "--mixture", name]) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["windows"] == expected and line["total"] == sum(expected.values())
    assert main(["inspect", str(root / "shards")]) == 0
    assert "mpi_inf_3dhp" in capsys.readouterr().out


def test_rebuild_one_dataset_keeps_the_others(built, tmp_path, ray_local):
    root, _ = built
    copy = tmp_path / "shards"
    shutil.copytree(root / "shards", copy)
    kw = dict(segment_len=SEGMENT, clip_len=CLIP, count_clip_lens=(1, 5), progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        build(str(root / "store"), copy, datasets=["amass"], **kw)
    with pytest.raises(ValueError, match="built with"):
        build(str(root / "store"), copy, datasets=["amass"], overwrite=True, **{**kw, "clip_len": 7})
    before = load_manifest(copy)
    after = build(str(root / "store"), copy, datasets=["amass"], overwrite=True, **{**kw, "shard_size": 1 << 20})
    assert after["totals"]["amass"]["train"]["shards"] == 1 < before["totals"]["amass"]["train"]["shards"]
    assert {k: v for k, v in after["shards"].items() if not k.startswith("amass")} == {
        k: v for k, v in before["shards"].items() if not k.startswith("amass")
    }
    assert after["totals"]["amass"]["train"]["windows"] == before["totals"]["amass"]["train"]["windows"]
    assert verify(copy) == []


def test_float16_keeps_every_joint_within_half_a_millimetre(tmp_path, ray_local):
    layout = {("amass", "train"): [300, 150]}
    sequences = make_store(tmp_path / "store", layout, seed=3)
    far = sequences["amass_train_01"]
    far.pose3d[40:45, 13] += np.float32([2.5, 0.0, 0.0])  # a joint 2.5 m from the pelvis: float16 too coarse
    MotionStore.open(str(tmp_path / "store")).write_part("amass", "train1", [far], overwrite=True)
    manifest = build(
        str(tmp_path / "store"), tmp_path / "shards", segment_len=128, clip_len=27, dtype="float16", progress=False
    )
    assert manifest["totals"]["amass"]["train"]["float32_fallback"] == 1
    worst, naive, dtypes = 0.0, 0.0, set()
    for path in (tmp_path / "shards" / "amass").glob("*.tar"):
        for sample in read_tar(path).values():
            meta = json.loads(sample["meta.json"])
            truth = sequences[meta["id"]].pose3d[meta["start"] : meta["stop"]].astype(np.float64)
            p3 = np.load(io.BytesIO(sample["pose3d.npy"]))
            dtypes.add(str(p3.dtype))
            rebuilt = p3.astype(np.float64) + np.load(io.BytesIO(sample["root.npy"]))[:, None]
            worst = max(worst, np.linalg.norm(rebuilt - truth, axis=-1).max())
            naive = max(naive, np.linalg.norm(truth.astype(np.float16) - truth, axis=-1).max())
    assert dtypes == {"float16", "float32"}
    assert worst <= 0.5e-3
    assert naive > 1e-3  # absolute camera-frame metres in float16 would not do


def test_non_finite_frames_are_masked_and_zeroed(tmp_path, ray_local):
    sequences = make_store(tmp_path / "store", {("h36m", "train"): [12]}, seed=4)
    seq = sequences["h36m_train_00"]
    seq.pose3d[3:5, 2] = np.nan
    seq.pose2d[7, 0, 1] = np.inf
    MotionStore.open(str(tmp_path / "store")).write_part("h36m", "train1", [seq], overwrite=True)
    build(str(tmp_path / "store"), tmp_path / "shards", segment_len=64, clip_len=9, progress=False)
    (sample,) = read_tar(tmp_path / "shards" / "h36m" / "train-000000.tar").values()
    meta = json.loads(sample["meta.json"])
    assert meta["invalid3d"] == [[3, 5]] and meta["invalid2d"] == [[7, 8]] and meta["valid_mask"] is False
    p2, p3 = (np.load(io.BytesIO(sample[k])) for k in ("pose2d.npy", "pose3d.npy"))
    assert np.isfinite(p2).all() and np.isfinite(p3).all()
    assert not p3[3:5].any() and not p2[7].any() and p3[5:].any()


def test_failed_rebuild_keeps_the_old_shards_and_manifest(built, tmp_path, ray_local):
    """``overwrite`` builds beside the old shards: a build that fails (a damaged store part) leaves the old
    shards, byte for byte, and the old manifest, which still verifies, and no staging folder."""
    root, _ = built
    store, copy = tmp_path / "store", tmp_path / "shards"
    shutil.copytree(root / "store", store)
    shutil.copytree(root / "shards", copy)
    before = load_manifest(copy)
    tars = {p: p.read_bytes() for p in sorted((copy / "amass").rglob("*.tar"))}
    part = sorted((store / "amass" / "parts").iterdir())[-1]
    next(c for c in sorted((part / "pose3d" / "c").rglob("*")) if c.is_file()).unlink()
    kw = dict(segment_len=SEGMENT, clip_len=CLIP, count_clip_lens=(1, 5), progress=False)
    with pytest.raises(RuntimeError, match=r"chunk files missing.*the old shards are kept"):
        build(str(store), copy, datasets=["amass"], overwrite=True, **{**kw, "shard_size": 1 << 20})
    assert load_manifest(copy) == before and verify(copy) == []
    assert {p: p.read_bytes() for p in sorted((copy / "amass").rglob("*.tar"))} == tars
    assert not list(copy.glob(".building-*"))
