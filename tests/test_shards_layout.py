"""Segments, window ownership and mixture selection (pure functions, no files)."""

from __future__ import annotations

import json

import pytest
from invariants import sequence_windows

from shards.layout import Segment, count_windows, cut_segments, window_starts
from shards.mixtures import Share, load_mixtures, resolve, selected, selection_value


def test_cut_segments_hand_example():
    # n=10, segment 6, clip 3: step 6 - 3 + 1 = 4, segments [0, 6) and [4, 10) overlapping by 2 frames.
    assert cut_segments(10, 6, 3) == [Segment(0, 6, 4, 10), Segment(4, 10, 10, 10)]
    assert cut_segments(6, 6, 3) == [Segment(0, 6, 6, 6)]
    assert list(window_starts(Segment(0, 6, 4, 10), 3)) == [0, 1, 2, 3]
    assert list(window_starts(Segment(4, 10, 10, 10), 3)) == [4, 5, 6, 7]


@pytest.mark.parametrize("segment_len,build_clip", [(6, 3), (20, 9), (16, 16), (50, 1)])
def test_every_window_owned_exactly_once(segment_len, build_clip):
    for n in range(1, 80):
        segments = cut_segments(n, segment_len, build_clip)
        assert segments[0].start == 0 and segments[-1].stop == n
        for a, b in zip(segments, segments[1:], strict=False):
            assert a.stop - b.start == build_clip - 1  # overlap
        for clip in {1, max(1, build_clip // 2), build_clip}:
            for stride in (1, 2, 5):
                starts = [t for s in segments for t in window_starts(s, clip, stride)]
                expected = list(range(0, n - clip + 1, stride)) if n >= clip else [0]
                assert sorted(starts) == expected, (n, clip, stride)
                assert len(starts) == sequence_windows(n, clip, stride)
                for s in segments:  # each owned window lies inside its segment (or is the padded one)
                    for t in window_starts(s, clip, stride):
                        assert s.start <= t and (t + clip <= s.stop or n < clip)
                assert sum(count_windows(s, clip, stride) for s in segments) == len(expected)


def test_cut_segments_rejects_bad_sizes():
    with pytest.raises(ValueError, match="segment_len >= clip_len"):
        cut_segments(100, 10, 20)
    with pytest.raises(ValueError, match="stride"):
        window_starts(Segment(0, 5, 5, 5), 3, 0)


def test_selection_value_is_the_sha256_prefix():
    # sha256("abc") = ba7816bf8f01cfea414140de5dae2223... (FIPS 180-2 test vector)
    assert selection_value("abc") == 0xBA7816BF8F01CFEA / 2.0**64


def test_mixtures_nested_and_deterministic():
    table = load_mixtures()
    assert table["small"] == {"h36m": Share(0.5), "mpi_inf_3dhp": Share(0.25)}
    assert table["base"] == {"h36m": Share(1.0), "mpi_inf_3dhp": Share(0.5)}
    assert set(table["large"]) == {"h36m", "mpi_inf_3dhp", "amass"}
    ids = [f"S{i}_take{i * 7 % 13}_cam{i % 4}" for i in range(4000)]
    for dataset in ("h36m", "mpi_inf_3dhp", "amass"):
        small = {i for i in ids if selected(i, table["small"].get(dataset))}
        base = {i for i in ids if selected(i, table["base"].get(dataset))}
        large = {i for i in ids if selected(i, table["large"].get(dataset))}
        assert small <= base <= large
    quarter = sum(selected(i, Share(0.25)) for i in ids) / len(ids)
    half = sum(selected(i, Share(0.5)) for i in ids) / len(ids)
    assert abs(quarter - 0.25) < 0.03 and abs(half - 0.5) < 0.03
    assert [selected(i, Share(0.5)) for i in ids] == [selected(i, Share(0.5)) for i in ids]


def test_user_mixtures_and_errors(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"tiny": {"amass": {"fraction": 0.1, "weight": 3}}, "base": {"h36m": 0.2}}))
    assert resolve("tiny", mixtures_file=path) == {"amass": Share(0.1, 3.0)}
    assert resolve("base", mixtures_file=path) == {"h36m": Share(0.2)}  # user file overrides by name
    assert resolve(datasets=["h36m"]) == {"h36m": Share(1.0)}
    with pytest.raises(ValueError, match="unknown mixture 'nope'"):
        resolve("nope")
    with pytest.raises(ValueError, match="exactly one"):
        resolve("base", ["h36m"])
    path.write_text(json.dumps({"bad": {"coco": 0.5}}))
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        load_mixtures(path)
    path.write_text(json.dumps({"bad": {"h36m": 1.5}}))
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        load_mixtures(path)


def test_mixtures_by_subject(tmp_path):
    from shards.mixtures import MODALITIES

    table = load_mixtures()
    assert table["semi-small"]["h36m"].modalities("S1") == MODALITIES
    assert table["semi-large"]["h36m"].modalities("S7") == ("2d",)
    assert table["semi-large"]["h36m"].modalities("S11") == ()  # test subjects are never selected
    assert table["full-base"]["h36m"].modalities("S5") == MODALITIES
    for regime in ("semi", "full"):  # nested: each scale's subjects and modalities contain the smaller one's
        scales = [dict(table[f"{regime}-{s}"]["h36m"].subjects) for s in ("small", "base", "large")]
        for smaller, larger in zip(scales, scales[1:], strict=False):
            assert all(set(m) <= set(larger.get(s, ())) for s, m in smaller.items())
    share = resolve({"h36m": {"subjects": ["S5"]}})["h36m"]
    assert selected("S5_Walking_1_x", share, "S5")
    assert not selected("S1_Walking_1_x", share, "S1")
    with pytest.raises(ValueError, match="subject is unknown"):
        selected("S5_Walking_1_x", share)
    with pytest.raises(ValueError, match="'pairs' needs both"):
        resolve({"h36m": {"subjects": {"S1": ["2d", "pairs"]}}})
    with pytest.raises(ValueError, match="modalities"):
        resolve({"h36m": {"subjects": {"S1": ["depth"]}}})
    with pytest.raises(ValueError, match="unknown key"):
        resolve({"h36m": {"subject": ["S1"]}})
