"""Motion store: round trips on local disk and fsspec memory, atomic parts, index, validation."""

import numpy as np
import pytest

from ingest.store import MotionStore, Sequence, safe_name


def make_sequence(seq_id: str, frames: int, seed: int = 0, extra: bool = False) -> Sequence:
    rng = np.random.default_rng(seed)
    meta = dict(
        id=seq_id,
        subject="S1",
        action="Walking",
        camera="c0",
        split="train",
        fps=50,
        width=1000,
        height=1000,
        source="/data/x.h5",
    )
    return Sequence(
        meta=meta,
        pose3d=rng.normal(size=(frames, 17, 3)).astype(np.float32),
        pose2d=rng.normal(size=(frames, 17, 3)).astype(np.float32),
        frames={"valid": rng.random(frames) > 0.5} if extra else {},
    )


@pytest.mark.parametrize("url", ["local", "memory://store-roundtrip"])
def test_round_trip(tmp_path, url):
    store = MotionStore.open(str(tmp_path / "s") if url == "local" else url)
    seqs = [make_sequence(f"a{i}", 10 + 5 * i, seed=i, extra=True) for i in range(3)]
    assert store.write_part("h36m", "part_a", seqs) == 10 + 15 + 20
    store.write_part("h36m", "part_b", [make_sequence("b0", 7, seed=9, extra=True)])
    store.write_index("h36m")
    view = MotionStore.open(store.url)["h36m"]
    assert len(view) == 4 and view.num_frames == 52 and view.frame_counts == [10, 15, 20, 7]
    for seq in [*seqs, make_sequence("b0", 7, seed=9, extra=True)]:
        got = view[seq.meta["id"]]
        np.testing.assert_array_equal(got.pose3d, seq.pose3d)
        np.testing.assert_array_equal(got.pose2d, seq.pose2d)
        np.testing.assert_array_equal(got.frames["valid"], seq.frames["valid"])
        assert got.meta == seq.meta
    assert [s.meta["id"] for s in view] == ["a0", "a1", "a2", "b0"]


def test_existing_part_needs_overwrite(tmp_path):
    store = MotionStore.open(str(tmp_path))
    store.write_part("h36m", "p", [make_sequence("a", 5)])
    with pytest.raises(FileExistsError, match="p exists"):
        store.write_part("h36m", "p", [make_sequence("a", 6)])
    store.write_part("h36m", "p", [make_sequence("a", 6)], overwrite=True)
    assert store["h36m"].num_frames == 6


def test_half_written_part_is_never_read_and_is_cleaned(tmp_path):
    store = MotionStore.open(str(tmp_path))
    store.write_part("h36m", "done", [make_sequence("a", 5)])
    # An interrupted writer leaves its temporary group behind.
    tmp = tmp_path / "h36m" / "tmp" / "half.1234abcd"
    tmp.mkdir(parents=True)
    (tmp / "zarr.json").write_text("{not json")
    assert store["h36m"].ids == ["a"]
    assert store.clean_tmp("h36m") == 1 and not tmp.exists()


def test_stale_index_is_rebuilt(tmp_path):
    store = MotionStore.open(str(tmp_path))
    store.write_part("h36m", "p1", [make_sequence("a", 5)])
    store.write_index("h36m")
    store.write_part("h36m", "p2", [make_sequence("b", 5)])  # index.json no longer lists every part
    assert store["h36m"].ids == ["a", "b"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.meta.pop("split"), "lacks"),
        (lambda s: s.meta.update(id="S1 Walking.1"), "id must contain"),
        (lambda s: setattr(s, "pose2d", s.pose2d[:-1]), "pose2d has shape"),
        (lambda s: s.frames.update(valid=np.ones(3, bool)), "frame array 'valid'"),
    ],
)
def test_validation_names_the_problem(tmp_path, mutate, message):
    seq = make_sequence("a", 5)
    mutate(seq)
    with pytest.raises(ValueError, match=message):
        MotionStore.open(str(tmp_path)).write_part("h36m", "p", [seq])
    assert not (tmp_path / "h36m" / "parts" / "p").exists()


def test_duplicate_ids_across_parts_are_reported(tmp_path):
    store = MotionStore.open(str(tmp_path))
    store.write_part("h36m", "p1", [make_sequence("a", 5)])
    store.write_part("h36m", "p2", [make_sequence("a", 5)])
    with pytest.raises(ValueError, match="'a' appears in parts"):
        store["h36m"]


def test_safe_name():
    assert safe_name("S1/MyPoses/Directions 1.h5") == "S1_MyPoses_Directions_1_h5"


def test_a_missing_chunk_file_is_an_error_never_zeros(tmp_path):
    """zarr reads a missing chunk as its fill value: an all-zero array still reads back (its chunk is stored),
    while a deleted chunk file makes the read fail, naming the part and the array."""
    store = MotionStore.open(str(tmp_path))
    zeros = make_sequence("z", 8)
    zeros.pose2d[:] = 0.0  # a legitimately all-zero array (e.g. 2D not granted) must not look damaged
    store.write_part("h36m", "p", [zeros, make_sequence("a", 5, seed=1)])
    store.write_index("h36m")
    np.testing.assert_array_equal(MotionStore.open(store.url)["h36m"]["z"].pose2d, zeros.pose2d)
    chunks = sorted((tmp_path / "h36m" / "parts" / "p" / "pose3d" / "c").rglob("*"))
    next(c for c in chunks if c.is_file()).unlink()
    with pytest.raises(OSError, match=r"h36m/parts/p/pose3d: 1 of 1 chunk files missing"):
        MotionStore.open(store.url)["h36m"]["a"]
