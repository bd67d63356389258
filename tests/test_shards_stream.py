"""The streaming loader on a small generated store: exactly-once epochs, mixtures, contents, options."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from shards_fakes import CLIP, FOCAL, HEIGHT, SEGMENT, WIDTH, make_store

from ingest.skeleton import H36M17, H36M17_TO_16
from shards import DATASETS
from shards.manifest import load_manifest, mixture_windows, verify
from shards.mixtures import parse_mixture, resolve, selection_value
from shards.sampling import seek_sample
from shards.stream import LoaderOptions, make_loader
from shards.writer import build


def expected_windows(sequences, clip, stride=1, split="train", keep=lambda s: True):
    out = Counter()
    for s in sequences.values():
        if s.meta["split"] == split and keep(s):
            n = len(s)
            out.update((s.meta["id"], t) for t in (range(0, n - clip + 1, stride) if n >= clip else [0]))
    return out


def collect(loader):
    seen, batches = Counter(), []
    for batch in loader:
        seen.update(zip(batch["sequence"], batch["start"].tolist(), strict=True))
        batches.append(batch)
    return seen, batches


def window_truth(seq, start, clip):
    """The loader's expected pose2d / pose3d / valid of one window, computed from the store sequence."""
    index = np.minimum(np.arange(start, start + clip), len(seq) - 1)
    p3 = seq.pose3d[index].astype(np.float64)
    px = seq.pose2d[index].astype(np.float64)
    p2 = np.stack([px[..., 0] / WIDTH * 2 - 1, px[..., 1] / WIDTH * 2 - HEIGHT / WIDTH, px[..., 2]], axis=-1)
    valid = seq.frames["valid"][index] if "valid" in seq.frames else np.ones(clip, bool)
    valid = valid & (np.arange(start, start + clip) < len(seq))
    return p2, p3 - p3[:, :1], valid, p3[:, 0, 2]


def test_every_train_window_exactly_once(built):
    shards, sequences = built
    for clip, stride in ((CLIP, 1), (5, 3)):
        loader = make_loader(
            shards,
            LoaderOptions(
                datasets=["h36m", "mpi_inf_3dhp", "amass"],
                clip_len=clip,
                stride=stride,
                batch_size=7,
                resampled=False,
                with_keys=True,
                seed=1,
            ),
        )
        seen, batches = collect(loader)
        assert seen == expected_windows(sequences, clip, stride)
        assert loader.windows == sum(seen.values()) and len(batches) == len(loader)
        assert not any("_test_" in sid for sid, _ in seen)
    for batch in batches[:6]:
        for b, (sid, start) in enumerate(zip(batch["sequence"], batch["start"].tolist(), strict=True)):
            p2, p3, valid, _ = window_truth(sequences[sid], start, 5)
            np.testing.assert_allclose(batch["pose3d"][b][valid].numpy(), p3[valid], atol=1e-5)
            np.testing.assert_allclose(batch["pose2d"][b][valid].numpy(), p2[valid], atol=1e-5)
            assert (batch["valid2d"][b].numpy() == valid).all() and (batch["valid3d"][b].numpy() == valid).all()


def test_short_sequences_padded_by_edge_replication(built):
    shards, sequences = built
    loader = make_loader(
        shards, LoaderOptions(datasets=["amass"], clip_len=CLIP, batch_size=256, resampled=False, with_keys=True)
    )
    (batch,) = list(loader)
    b = batch["sequence"].index("amass_train_03")  # 3 frames long
    p2, p3, valid, _ = window_truth(sequences["amass_train_03"], 0, CLIP)
    np.testing.assert_allclose(batch["pose3d"][b].numpy(), p3, atol=1e-5)
    np.testing.assert_allclose(batch["pose2d"][b].numpy(), p2, atol=1e-5)
    assert batch["valid3d"][b].tolist() == [True] * 3 + [False] * (CLIP - 3)
    assert batch["dataset"].tolist() == [2] * len(batch["dataset"])


def test_test_split_and_mixture_rules(built):
    shards, sequences = built
    seen, _ = collect(
        make_loader(
            shards, LoaderOptions(datasets=["h36m"], split="test", batch_size=16, resampled=False, with_keys=True)
        )
    )
    assert seen == expected_windows(sequences, CLIP, split="test")
    with pytest.raises(ValueError, match="train split"):
        make_loader(shards, LoaderOptions(mixture="base", split="test"))
    with pytest.raises(ValueError, match="clip_len 10"):
        make_loader(shards, LoaderOptions(mixture="base", clip_len=10))


def test_non_resampled_needs_a_shard_per_rank(built, monkeypatch):
    shards, _ = built
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1000")
    with pytest.raises(ValueError, match="needs one per rank"):
        make_loader(shards, LoaderOptions(datasets=["amass"], resampled=False))
    assert len(make_loader(shards, LoaderOptions(datasets=["amass"], batch_size=4))) == 1  # resampled: ceil(158 / 4000)


def test_mixture_counts_match_manifest_and_loader(built):
    shards, sequences = built
    manifest = load_manifest(shards)
    chosen = {}
    for name in ("small", "base", "large"):
        shares = resolve(name)
        loader = make_loader(shards, LoaderOptions(mixture=name, batch_size=16, resampled=False, with_keys=True))
        seen, _ = collect(loader)

        def keep(s, shares=shares):
            share = shares.get(s.meta["id"].split("_train")[0])
            return share is not None and selection_value(s.meta["id"]) < share.fraction

        assert seen == expected_windows(sequences, CLIP, keep=keep)
        per_dataset = Counter(sid.split("_train")[0] for sid, _ in seen.elements())
        assert mixture_windows(manifest, shares) == {d: per_dataset[d] for d in shares}
        assert loader.windows_per_dataset == mixture_windows(manifest, shares)
        chosen[name] = {sid for sid, _ in seen}
    assert chosen["small"] < chosen["base"] < chosen["large"]


def test_flip_joints_dtype_and_normalised_3d(built):
    shards, sequences = built
    kw = dict(datasets=["h36m"], batch_size=512, resampled=False, with_keys=True, seed=5)
    (plain,) = list(make_loader(shards, LoaderOptions(**kw)))
    (flipped,) = list(make_loader(shards, LoaderOptions(flip=True, **kw)))
    (j16,) = list(make_loader(shards, LoaderOptions(joints=16, dtype="float16", normalize_3d=True, **kw)))
    assert plain["sequence"] == flipped["sequence"] == j16["sequence"]  # same seed: same order
    perm = H36M17.flip_permutation()
    mirrored = plain["pose3d"][:, :, perm] * torch.tensor([-1.0, 1.0, 1.0])
    mirrored2d = plain["pose2d"][:, :, perm] * torch.tensor([-1.0, 1.0, 1.0])
    is_flipped = [torch.equal(flipped["pose3d"][b], mirrored[b]) for b in range(len(mirrored))]
    for b, f in enumerate(is_flipped):
        assert torch.equal(flipped["pose3d"][b], mirrored[b] if f else plain["pose3d"][b])
        assert torch.equal(flipped["pose2d"][b], mirrored2d[b] if f else plain["pose2d"][b])
    assert 0.3 < np.mean(is_flipped) < 0.7
    assert j16["pose3d"].dtype == torch.float16 and j16["pose3d"].shape[2] == 16
    np.testing.assert_allclose(j16["pose3d"].float(), plain["pose3d"][:, :, H36M17_TO_16], atol=2e-3)
    for b in range(0, 40, 7):
        _, p3, _, z = window_truth(sequences[j16["sequence"][b]], j16["start"][b].item(), CLIP)
        expected = p3 * (FOCAL / z * 2 / WIDTH)[:, None, None]
        np.testing.assert_allclose(j16["pose3d_norm"][b].float(), expected[:, H36M17_TO_16], atol=2e-3)


def test_resampled_epochs_resume_and_weights(built):
    shards, _ = built
    kw = dict(mixture="large", batch_size=8, steps_per_epoch=6, seed=3, with_keys=True)
    loader = make_loader(shards, LoaderOptions(**kw))
    first = [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in loader]
    assert len(first) == 6 and loader.state_dict() == {"seed": 3, "epoch": 1, "batch": 0}
    second = [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in loader]
    assert second != first  # a new epoch draws anew
    resumed = make_loader(shards, LoaderOptions(**kw))
    it = iter(resumed)
    head = [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in (next(it), next(it))]
    state = resumed.state_dict()
    assert head == first[:2] and state == {"seed": 3, "epoch": 0, "batch": 2}
    restored = make_loader(shards, LoaderOptions(**{**kw, "seed": 99}))
    restored.load_state_dict(state)
    assert [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in restored] == first[2:]
    at_end = make_loader(shards, LoaderOptions(**kw))  # a checkpoint on an epoch's last step, mid-iteration
    it = iter(at_end)
    assert [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in (next(it) for _ in range(6))] == first
    assert at_end.state_dict() == {"seed": 3, "epoch": 0, "batch": 6}
    restored = make_loader(shards, LoaderOptions(**kw))
    restored.load_state_dict(at_end.state_dict())
    assert [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in restored] == second
    heavy = make_loader(
        shards,
        LoaderOptions(
            mixture={"h36m": 1.0, "amass": {"fraction": 1.0, "weight": 20.0}}, batch_size=32, steps_per_epoch=20, seed=0
        ),
    )
    light = make_loader(
        shards, LoaderOptions(mixture={"h36m": 1.0, "amass": 1.0}, batch_size=32, steps_per_epoch=20, seed=0)
    )
    share = [torch.cat([b["dataset"] for b in ld]).eq(2).float().mean().item() for ld in (heavy, light)]
    assert share[0] > 0.6 > share[1]


def test_corrupt_shard_is_skipped_and_counted(built, tmp_path):
    shards, sequences = built
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = load_manifest(copy)
    victim = sorted(n for n, r in manifest["shards"].items() if r["dataset"] == "amass")[0]
    data = (copy / victim).read_bytes()
    (copy / victim).write_bytes(data[:700] + b"\xff" * 600 + data[1300:])  # garbles the first member
    lost = Counter()
    for sid, start, _, own, n in manifest["shards"][victim]["index"]:
        lost.update((sid, t) for t in (range(start, min(own, n - CLIP + 1)) if n >= CLIP else [0]))
    options = LoaderOptions(datasets=["amass"], batch_size=4, resampled=False, with_keys=True, max_corrupt=0.5)
    loader = make_loader(copy, options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen, batches = collect(loader)
    assert loader.corrupt_shards == 1 and loader.corrupt_per_dataset == {"amass": 1}
    assert any(victim in str(w.message) for w in caught)
    with pytest.warns(UserWarning, match="skipping corrupt shard"):
        collect(loader)  # a second epoch reads the shard again (and warns again): still one corrupt shard
    assert loader.corrupt_shards == 1
    strict = make_loader(copy, replace(options, max_corrupt=0.0))  # the default: the first one stops the stream
    with pytest.warns(UserWarning, match="skipping corrupt shard"):
        with pytest.raises(RuntimeError, match=r"1 of \d+ shards corrupt \({'amass': 1}\), more than max_corrupt=0.0"):
            collect(strict)
    # the windows of the other shards; the pass is shorter than planned, so it is repeated to len(loader)
    assert set(seen) == set(expected_windows(sequences, CLIP, keep=lambda s: s.meta["id"].startswith("amass")) - lost)
    assert len(batches) == len(loader)


def test_a_flipped_payload_byte_is_a_corrupt_sample_not_training_data(built, tmp_path):
    """One byte of a segment's ``pose3d.npy`` data changed (the tar and the npy still parse): the CRC-32 in its
    ``meta.json`` catches it, the shard is skipped and counted like any corrupt one, and no window of it is
    streamed with the damaged values."""
    shards, sequences = built
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = load_manifest(copy)
    victim = sorted(n for n, r in manifest["shards"].items() if r["dataset"] == "amass")[0]
    with tarfile.open(copy / victim) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".pose3d.npy"))
    data = bytearray((copy / victim).read_bytes())
    data[member.offset_data + member.size - 5] ^= 0x40  # inside the last float of the array: still a valid npy
    (copy / victim).write_bytes(bytes(data))
    options = LoaderOptions(datasets=["amass"], batch_size=4, resampled=False, with_keys=True, max_corrupt=0.5)
    loader = make_loader(copy, options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen, _ = collect(loader)
    assert loader.corrupt_shards == 1
    assert any(victim in str(w.message) and "CRC-32" in str(w.message) for w in caught)
    sid, start, _, own, n = manifest["shards"][victim]["index"][0]  # the damaged segment's windows
    assert not set(seen) & {(sid, t) for t in (range(start, min(own, n - CLIP + 1)) if n >= CLIP else [0])}


def test_shards_behind_an_fsspec_url(built):
    shards, sequences = built
    memory = fsspec.filesystem("memory")
    for path in sorted(shards.rglob("*")):
        if path.is_file():
            memory.pipe(f"/url_test/{path.relative_to(shards)}", path.read_bytes())
    assert verify("memory://url_test") == []
    loader = make_loader(
        "memory://url_test", LoaderOptions(datasets=["amass"], batch_size=16, resampled=False, with_keys=True)
    )
    seen, batches = collect(loader)
    assert seen == expected_windows(sequences, CLIP, keep=lambda s: s.meta["id"].startswith("amass"))
    assert set(loader.shards) == {s for b in batches for s in b["shard"]}
    assert all(name.startswith("amass/train-") for name in loader.shards)
    memory.rm("/url_test", recursive=True)


RANK_SCRIPT = """
import json, sys
from shards.stream import LoaderOptions, make_loader
out = {}
for resampled in (False, True):
    loader = make_loader(sys.argv[1], LoaderOptions(mixture="large", batch_size=5, num_workers=2,
                                                   resampled=resampled, with_keys=True, seed=7))
    steps = len(loader)
    batches = list(loader)
    out[str(resampled)] = {"batches": len(batches), "len": steps,
                           "shards": sorted({s for b in batches for s in b["shard"]}),
                           "windows": sorted({(s, t) for b in batches
                                              for s, t in zip(b["sequence"], b["start"].tolist())})}
print(json.dumps(out))
"""


def test_two_ranks_two_workers(built):
    shards, sequences = built
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(shards)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2"},
            cwd=Path(__file__).parent,
        )
        for r in range(2)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.append(json.loads(out))
    exact, resampled = [r["False"] for r in results], [r["True"] for r in results]
    assert not set(exact[0]["shards"]) & set(exact[1]["shards"])
    large = make_loader(shards, LoaderOptions(mixture="large", batch_size=5, resampled=False))
    assert set(exact[0]["shards"]) | set(exact[1]["shards"]) == set(large.shards)
    assert exact[0]["batches"] == exact[1]["batches"] == exact[0]["len"]
    assert resampled[0]["batches"] == resampled[1]["batches"] == resampled[0]["len"] > 0
    union = {tuple(w) for r in exact for w in r["windows"]}
    assert union == set(expected_windows(sequences, CLIP, keep=lambda s: True))


# Resampled mixing: each dataset's train split in ONE shard of many segments (as with 64 MB shards).
MIX_LAYOUT = {("h36m", "train"): [300] * 6, ("mpi_inf_3dhp", "train"): [200] * 8, ("amass", "train"): [150] * 6}


@pytest.fixture(scope="module")
def one_shard_each(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("shards_mix")
    sequences = make_store(root / "store", MIX_LAYOUT, seed=1)
    build(str(root / "store"), root / "single", segment_len=SEGMENT, clip_len=CLIP, shard_size=64 << 20, progress=False)
    return root, sequences


def mixture_probs(sequences, shares):
    """Expected dataset index -> probability: selected stride-1 windows (n - CLIP + 1 per sequence, counted
    from the store) times the weight, normalised."""
    mass = Counter()
    for s in sequences.values():
        dataset = s.meta["id"].split("_train")[0]
        share = shares.get(dataset)
        if share is not None and selection_value(s.meta["id"]) < share.fraction:
            mass[DATASETS.index(dataset)] += (len(s) - CLIP + 1) * share.weight
    return {d: m / sum(mass.values()) for d, m in mass.items()}


@pytest.mark.parametrize(
    "spec",
    [
        {"h36m": 1.0, "mpi_inf_3dhp": 1.0, "amass": 1.0},
        {"h36m": 1.0, "mpi_inf_3dhp": 0.5, "amass": {"fraction": 1.0, "weight": 2.0}},
    ],
)
def test_resampled_batches_mix_datasets_in_proportion(one_shard_each, spec):
    root, sequences = one_shard_each
    manifest = load_manifest(root / "single")
    assert Counter(r["dataset"] for r in manifest["shards"].values()) == {d: 1 for d in DATASETS}
    assert min(r["segments"] for r in manifest["shards"].values()) > 32  # more than the shuffle buffer holds
    probs = mixture_probs(sequences, resolve(spec))
    assert len(probs) == 3 and min(probs.values()) > 0.1  # 3DHP half selects some of its sequences
    batches, size = 25, 128
    loader = make_loader(
        root / "single", LoaderOptions(mixture=spec, batch_size=size, steps_per_epoch=batches, seed=11)
    )
    labels = torch.stack([b["dataset"] for b in loader])  # (batches, size)
    # every window's dataset is an independent draw: P(a dataset with p > 0.1 absent from 128) < 2e-6
    for batch in labels[:3]:
        assert set(batch.tolist()) == {0, 1, 2}
    # counts over N windows are Binomial(N, p): within 5 standard deviations (fails with p < 2e-6)
    n = labels.numel()
    for d, p in probs.items():
        assert abs((labels == d).sum().item() - n * p) < 5 * math.sqrt(n * p * (1 - p)), (d, p)


def test_dataset_weight_doubles_its_share(one_shard_each):
    root, sequences = one_shard_each
    plain = {"h36m": 1.0, "amass": 1.0}
    heavy = {"h36m": 1.0, "amass": {"fraction": 1.0, "weight": 2.0}}
    p1, p2 = mixture_probs(sequences, resolve(plain))[2], mixture_probs(sequences, resolve(heavy))[2]
    assert p2 / (1 - p2) == pytest.approx(2 * p1 / (1 - p1))  # the odds double
    n = 40 * 64
    for spec, p in ((plain, p1), (heavy, p2)):
        loader = make_loader(root / "single", LoaderOptions(mixture=spec, batch_size=64, steps_per_epoch=40, seed=2))
        count = sum((b["dataset"] == 2).sum().item() for b in loader)
        assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p)), (spec, p)


def test_resampled_mix_reproducible_and_resumable(one_shard_each):
    root, _ = one_shard_each

    def keys(loader):
        return [list(zip(b["sequence"], b["start"].tolist(), strict=True)) for b in loader]

    kw = dict(mixture="large", batch_size=16, steps_per_epoch=8, with_keys=True, num_workers=2)
    first = keys(make_loader(root / "single", LoaderOptions(seed=5, **kw)))
    assert first == keys(make_loader(root / "single", LoaderOptions(seed=5, **kw)))
    assert first != keys(make_loader(root / "single", LoaderOptions(seed=6, **kw)))
    assert len({w for batch in first for w in batch}) > 0.95 * 8 * 16  # windows rarely repeat
    restored = make_loader(root / "single", LoaderOptions(seed=0, **kw))
    restored.load_state_dict({"seed": 5, "epoch": 0, "batch": 3})
    assert keys(restored) == first[3:]


def segment_order(shards, dataset, windows):
    """The shard's segment index (manifest ``index`` row) of each run of consecutive windows
    [(sequence, start), ...] of the same segment (a window belongs to the segment owning its start)."""
    (record,) = [
        r for r in load_manifest(shards)["shards"].values() if r["dataset"] == dataset and r["split"] == "train"
    ]
    owner = {(sid, t): i for i, (sid, start, _, own, _) in enumerate(record["index"]) for t in range(start, own)}
    order = [owner[w] for w in windows]
    return [s for k, s in enumerate(order) if k == 0 or s != order[k - 1]], len(record["index"])


@pytest.mark.parametrize("lanes", [1, 4])
def test_lanes_read_a_shard_from_random_segments_interleaved(one_shard_each, lanes):
    root, _ = one_shard_each
    # a buffer of one segment: windows come out segment by segment, in the order the lanes deliver them
    loader = make_loader(
        root / "single",
        LoaderOptions(
            datasets=["h36m"],
            batch_size=60,
            steps_per_epoch=8,
            with_keys=True,
            seed=4,
            shuffle_segments=1,
            open_shards=lanes,
        ),
    )
    windows = [w for b in loader for w in zip(b["sequence"], b["start"].tolist(), strict=True)]
    order, count = segment_order(root / "single", "h36m", windows)
    assert 30 < len(order) < count / 2  # (~12 windows per segment) a lane does not wrap round its shard here
    # each segment continues one of at most `lanes` runs of consecutive segments (cyclically): a lane
    # reads its shard in order, from a random segment
    heads = []
    for seg in order:
        run = [h for h, last in enumerate(heads) if seg == (last + 1) % count]
        if run:
            heads[run[0]] = seg
        else:
            heads.append(seg)
    assert len(heads) == lanes
    # 4 lanes: each next segment from a uniformly chosen lane, so ~3/4 of the steps switch lanes
    # (fewer than 10 of ~40 switches: Binomial(40, 3/4) <= 9 has P < 1e-9)
    switches = sum(b != (a + 1) % count for a, b in zip(order, order[1:], strict=False))
    assert switches == 0 if lanes == 1 else switches >= 10


def test_short_epochs_cover_a_single_shard(one_shard_each):
    root, sequences = one_shard_each
    # one 16-window batch per epoch: each epoch's lanes start at random segments of the one shard, so 30
    # epochs see all 6 sequences (4 lanes x 30 epochs: P(one missed) ~ 6 * (5/6)**120 < 1e-8); reading
    # from the shard's start gives its first sequence only
    loader = make_loader(
        root / "single",
        LoaderOptions(datasets=["h36m"], batch_size=16, steps_per_epoch=1, with_keys=True, seed=8, shuffle_segments=16),
    )
    seen = {sid for _ in range(30) for b in loader for sid in b["sequence"]}
    assert seen == {sid for sid in sequences if sid.startswith("h36m_train")}


def test_seek_sample_lands_on_each_segment(one_shard_each):
    root, _ = one_shard_each
    ((name, record),) = [(n, r) for n, r in load_manifest(root / "single")["shards"].items() if r["dataset"] == "amass"]
    keys = [f"{sid}__{start:08d}" for sid, start, *_ in record["index"]]  # the writer's sample keys, in order
    with open(root / "single" / name, "rb") as fh:
        for index in (1, 7, len(keys) - 1):
            fh.seek(0)
            seek_sample(fh, index)
            with tarfile.open(fileobj=fh, mode="r|") as tar:
                names = [m.name.split(".", 1)[0] for m in tar]
            assert [k for i, k in enumerate(names) if i == 0 or k != names[i - 1]] == keys[index:]
        fh.seek(0)
        with pytest.raises(EOFError, match=f"{len(keys)} samples"):
            seek_sample(fh, len(keys))


def test_dataset_with_only_corrupt_shards_drops_out_of_the_mix(one_shard_each, tmp_path):
    root, _ = one_shard_each
    copy = tmp_path / "single"
    shutil.copytree(root / "single", copy)
    data = (copy / "amass/train-000000.tar").read_bytes()
    (copy / "amass/train-000000.tar").write_bytes(data[:700] + b"\xff" * 600 + data[1300:])
    loader = make_loader(
        copy, LoaderOptions(mixture="large", batch_size=32, steps_per_epoch=10, seed=0, max_corrupt=1.0)
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        labels = torch.cat([b["dataset"] for b in loader])
    assert loader.corrupt_shards == 1 and len(labels) == 320 and set(labels.tolist()) == {0, 1}


def test_subjects_and_modalities(built):
    """A share by subject keeps only those subjects' windows; a subject granted 2D only streams zeros and
    invalid frames for its 3D and is never paired, whatever the rest of its window holds."""
    shards, sequences = built
    mixture = {"h36m": {"subjects": {"S0": ["2d", "3d", "pairs"], "S1": ["2d"]}}}
    loader = make_loader(
        shards, LoaderOptions(mixture=mixture, clip_len=5, batch_size=6, resampled=False, with_keys=True)
    )
    seen, batches = collect(loader)
    keep = lambda s: s.meta["id"].startswith("h36m_") and s.meta["subject"] in ("S0", "S1")  # noqa: E731
    assert seen == expected_windows(sequences, 5, keep=keep)
    assert loader.windows == mixture_windows(load_manifest(shards), resolve(mixture), "train", 5)["h36m"]
    for batch in batches:
        for b, sid in enumerate(batch["sequence"]):
            subject = sequences[sid].meta["subject"]
            p2, p3, valid, _ = window_truth(sequences[sid], int(batch["start"][b]), 5)
            np.testing.assert_allclose(batch["pose2d"][b].numpy(), p2, atol=1e-5)
            assert batch["valid2d"][b].tolist() == valid.tolist()
            assert bool(batch["paired"][b]) == (subject == "S0")
            if subject == "S1":
                assert not batch["valid3d"][b].any() and not batch["pose3d"][b].any()
            else:
                np.testing.assert_allclose(batch["pose3d"][b].numpy(), p3, atol=1e-5)
                assert batch["valid3d"][b].tolist() == valid.tolist()


def test_subject_weights_set_the_resampled_rate(built):
    """A subject weighing 3 against 1 is drawn at three times the other's per-window rate: the expected
    share of its windows is 3 W0 / (3 W0 + W1) (W: selected windows), within binomial bounds; the
    exactly-once mode ignores the weights."""
    shards, sequences = built
    mixture = {"h36m": {"subjects": {"S0": {"modalities": ["2d", "3d", "pairs"], "weight": 3}, "S1": ["2d"]}}}
    counts = Counter()
    for s in sequences.values():
        if s.meta["id"].startswith("h36m_") and s.meta["split"] == "train":
            counts[s.meta["subject"]] += max(len(s) - 5 + 1, 1)
    p = 3 * counts["S0"] / (3 * counts["S0"] + counts["S1"])
    loader = make_loader(
        shards, LoaderOptions(mixture=mixture, clip_len=5, batch_size=50, steps_per_epoch=40, seed=2, with_keys=True)
    )
    subjects = [sequences[sid].meta["subject"] for batch in loader for sid in batch["sequence"]]
    n, k = len(subjects), subjects.count("S0")
    assert n == 2000 and set(subjects) == {"S0", "S1"}
    assert abs(k - n * p) < 5 * math.sqrt(n * p * (1 - p)), (k, n, p)
    once = make_loader(
        shards, LoaderOptions(mixture=mixture, clip_len=5, batch_size=50, resampled=False, with_keys=True)
    )
    assert collect(once)[0] == expected_windows(
        sequences, 5, keep=lambda s: s.meta["id"].startswith("h36m_") and s.meta["subject"] in ("S0", "S1")
    )


def test_unlabelled_share_streams_a_labelled_subject_as_2d_only(built):
    """``unlabelled: u`` hands out a share u of a labelled subject's segments as 2D only when resampled: each
    window is either a pair with its true 3D, or its true 2D with 3D zeros, invalid and unpaired; both occur,
    about half of the windows each at u = 0.5; the exactly-once mode streams every window labelled."""
    shards, sequences = built
    mixture = {"h36m": {"subjects": {"S0": {"modalities": ["2d", "3d", "pairs"], "unlabelled": 0.5}}}}
    loader = make_loader(
        shards, LoaderOptions(mixture=mixture, clip_len=5, batch_size=50, steps_per_epoch=40, seed=3, with_keys=True)
    )
    outcomes = Counter()
    for batch in loader:
        for b, sid in enumerate(batch["sequence"]):
            p2, p3, valid, _ = window_truth(sequences[sid], int(batch["start"][b]), 5)
            np.testing.assert_allclose(batch["pose2d"][b].numpy(), p2, atol=1e-5)
            assert batch["valid2d"][b].tolist() == valid.tolist()
            if batch["paired"][b]:
                np.testing.assert_allclose(batch["pose3d"][b].numpy(), p3, atol=1e-5)
                assert batch["valid3d"][b].tolist() == valid.tolist()
            else:
                assert not batch["valid3d"][b].any() and not batch["pose3d"][b].any()
            outcomes[bool(batch["paired"][b])] += 1
    assert sum(outcomes.values()) == 2000 and 0.2 < outcomes[False] / 2000 < 0.8, outcomes
    once = make_loader(shards, LoaderOptions(mixture=mixture, clip_len=5, batch_size=50, resampled=False))
    assert all(bool(batch["paired"].all()) for batch in once)


@pytest.mark.parametrize(
    "spec, problem",
    [
        ({"modalities": ["2d", "3d", "pairs"], "unlabelled": 1.0}, r"'unlabelled': u in \[0, 1\)"),
        ({"modalities": ["3d"], "unlabelled": 0.5}, "'unlabelled' streams 2D only and needs '2d'"),
    ],
)
def test_unlabelled_share_refuses_bad_values(spec, problem):
    with pytest.raises(ValueError, match=f"mixture 'm', dataset 'h36m': subject 'S1': .*{problem}"):
        parse_mixture("m", {"h36m": {"subjects": {"S1": spec}}})
