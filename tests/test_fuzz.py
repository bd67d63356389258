"""Fuzzing the readers of outside files (hypothesis): a damaged or foreign input yields a result or the
reader's documented error naming the file, never another exception, a hang or a file written beside it.

Each reader gets a valid seed file in its native layout (``ingest.samples``, ``tests/shards_fakes.py``)
damaged by hypothesis: bytes overwritten (biased to the first and last 4 kB, where the h5 / zip / mat / tar
structures live), the file cut short, or replaced by arbitrary bytes; the text readers also get whole lines
replaced, the config loader any YAML document. Runs are derandomised (a fixed seed, no example database) and
try :data:`EXAMPLES` inputs per reader: 13 readers (the Human3.6M take h5, cameras.h5, Stacked Hourglass
detection h5, VideoPose3D npz and plain npz; the MPI-INF-3DHP train .mat, test .mat and both calibration
formats; the AMASS npz; a shard, streamed exactly once or resampled, and the shard manifest; the config
loader), 13 x 150 = 1,950 inputs in all. Each test checks that it tried them all, and the module prints the
inputs per reader and how they ended (a result, or which documented error) at its end. A reader that ends in
anything else, or takes over :data:`DEADLINE`, is a failure that hypothesis shrinks to a minimal input; one
stuck for :data:`HANG` seconds ends the test process with every thread's traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import math
import shutil
import string
import sys
import types
import warnings
from collections import Counter
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.amass import load_motion
from ingest.h36m import H36MReader, load_cameras_h5, stacked_hourglass_detections
from ingest.mpi_inf_3dhp import MPIINF3DHPReader
from ingest.mpi_inf_3dhp_calib import parse_skeletool, parse_tc
from ingest.samples import write_samples
from ingest.samples.h36m import write_take
from ingest.samples.motion import walking_motion
from ingest.untrusted import load_npz
from pretrain.config import Config as PretrainConfig
from shards.manifest import load_manifest
from shards.stream import LoaderOptions, make_loader
from training import settings as config_settings

EXAMPLES = 150  # inputs per reader; the module's whole count and the outcomes are printed at its end
DEADLINE = timedelta(seconds=20)  # per input: far above any reader's time on these small files
HANG = 600  # seconds one test may take before faulthandler ends the process (the deadline needs a return)
READ_ERRORS = (ValueError, KeyError, OSError)  # what every reader of ingest documents
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def damage(seed: bytes) -> st.SearchStrategy[bytes]:
    """Damaged versions of ``seed``: up to 16 bytes overwritten and optionally cut short, or any bytes."""
    n = len(seed)
    head, tail = min(n, 4096), max(0, n - 4096)
    position = st.one_of(st.integers(0, head - 1), st.integers(tail, n - 1), st.integers(0, n - 1))
    edits = st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=16)

    def apply(edit: list[tuple[int, int]], cut: int) -> bytes:
        out = bytearray(seed)
        for i, value in edit:
            out[i] = value
        return bytes(out[:cut])

    return st.one_of(
        st.builds(apply, edits, st.just(n)),
        st.builds(apply, edits, st.integers(0, n)),
        st.binary(max_size=2048),
    )


TRIED: dict[str, Counter] = {}  # test -> {"result" or the error's type name: inputs}


@pytest.fixture(autouse=True)
def tally(request) -> Counter:
    """The current test's outcome counts (:data:`TRIED`); a watchdog ends a hung test with tracebacks."""
    TRIED[request.node.name] = counts = Counter()
    faulthandler.dump_traceback_later(HANG, exit=True)
    yield counts
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """After the module: the inputs tried per reader and how they ended, on the terminal."""
    yield
    total = sum(sum(c.values()) for c in TRIED.values())
    lines = [f"fuzz inputs per reader ({total} in all):"]
    lines += [
        f"  {name}: {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in c.most_common())})"
        for name, c in TRIED.items()
    ]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
        else:
            print("\n".join(lines), file=sys.stderr)


def fuzz(strategy: st.SearchStrategy, check, counts: Counter) -> None:
    """Run ``check(data)`` on :data:`EXAMPLES` inputs of ``strategy`` under :data:`FUZZ`; each returns its
    outcome's name for the tally, which must count them all."""

    @FUZZ
    @given(strategy)
    def run(data):
        counts[check(data)] += 1

    run()
    assert sum(counts.values()) >= EXAMPLES, f"tried {sum(counts.values())} inputs, not {EXAMPLES}"


def read_or_refuse(read, path: Path, *args) -> tuple[object, str]:
    """(``read(path, *args)`` or None, the outcome: "result" or the error's type name); a documented error
    must name ``path``; nothing new may appear beside it."""
    before = sorted(path.parent.iterdir())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result, outcome = read(path, *args), "result"
    except READ_ERRORS as exc:
        assert str(path) in str(exc), f"{type(exc).__name__} does not name the file: {exc}"
        result, outcome = None, type(exc).__name__
    assert sorted(path.parent.iterdir()) == before, "the reader wrote beside its input"
    return result, outcome


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz_samples")
    write_samples(out)
    return out


@pytest.fixture
def work(tmp_path) -> Path:
    return tmp_path


def seeded(work: Path, src: Path, relative: str) -> tuple[Path, bytes]:
    """Copy ``src`` to ``work/relative``; returns the copy's path and the seed bytes."""
    path = work / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, path)
    return path, src.read_bytes()


# -- Human3.6M ----------------------------------------------------------------------------------------
def test_h36m_take_h5(work, tally):
    path = work / "S1" / "MyPoses" / "3D_positions" / "Walking 1.h5"
    write_take(path, walking_motion(40))
    reader = H36MReader()

    def check(data):
        path.write_bytes(data)
        sequences, outcome = read_or_refuse(reader.read, path)
        for seq in sequences or []:
            assert np.isfinite(seq.pose3d).all() and seq.pose3d.shape[1:] == (17, 3)
        return outcome

    fuzz(damage(path.read_bytes()), check, tally)


def test_h36m_cameras_h5(samples, work, tally):
    path, seed = seeded(work, samples / "h36m" / "cameras.h5", "cameras.h5")

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(load_cameras_h5, path)[1]

    fuzz(damage(seed), check, tally)


def test_stacked_hourglass_detections_h5(work, tally):
    """One camera's file of a take's four (Martinez release layout), damaged; the other three stay valid."""
    folder, frames = work / "S1" / "StackedHourglass", 40
    folder.mkdir(parents=True)
    cameras = [types.SimpleNamespace(id=cam) for cam in ("54138969", "55011271", "58860488", "60457274")]
    poses = np.random.default_rng(0).uniform(0, 1000, (frames, 16, 2))
    for cam in cameras:
        with h5py.File(folder / f"Walking_1.{cam.id}.h5", "w") as fh:
            fh["poses"] = poses
    path = folder / f"Walking_1.{cameras[0].id}.h5"

    def check(data):
        path.write_bytes(data)
        detections, outcome = read_or_refuse(
            lambda p: stacked_hourglass_detections(p.parent, "Walking 1", cameras, frames), path
        )
        for det in detections or []:
            assert det.shape == (frames, 17, 3) and np.isfinite(det).all()
        return outcome

    fuzz(damage(path.read_bytes()), check, tally)


def test_videopose3d_npz(work, tally):
    path = work / "data_3d_h36m.npz"
    np.savez(path, positions_3d={"S1": {"Walking 1": walking_motion(30)}})
    reader = H36MReader()

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(reader.read, path)[1]

    fuzz(damage(path.read_bytes()), check, tally)


def test_npz_arrays(work, tally):
    path = work / "data_2d_h36m_sh.npz"
    np.savez_compressed(path, positions_2d=np.arange(60.0).reshape(5, 4, 3), metadata={"layout_name": "h36m"})

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(load_npz, path)[1]

    fuzz(damage(path.read_bytes()), check, tally)


# -- MPI-INF-3DHP -------------------------------------------------------------------------------------
def test_mpi_inf_3dhp_train_mat(samples, work, tally):
    src = samples / "mpi_inf_3dhp" / "S1" / "Seq1"
    seeded(work, src / "camera.calibration", "S1/Seq1/camera.calibration")
    path, seed = seeded(work, src / "annot.mat", "S1/Seq1/annot.mat")
    reader = MPIINF3DHPReader()

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(reader.read, path)[1]

    fuzz(damage(seed), check, tally)


def test_mpi_inf_3dhp_test_mat(samples, work, tally):
    path, seed = seeded(work, samples / "mpi_inf_3dhp" / "TS1" / "annot_data.mat", "TS1/annot_data.mat")
    reader = MPIINF3DHPReader()

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(reader.read, path)[1]

    fuzz(damage(seed), check, tally)


@pytest.mark.parametrize(
    "parse, relative",
    [(parse_skeletool, "S1/Seq1/camera.calibration"), (parse_tc, "test_util/camera_calibration/ts1-4cameras.calib")],
)
def test_mpi_inf_3dhp_calibration_text(samples, work, tally, parse, relative):
    path, seed = seeded(work, samples / "mpi_inf_3dhp" / relative, relative)
    lines = seed.decode().splitlines(keepends=True)
    edited_lines = st.lists(
        st.tuples(st.integers(0, len(lines) - 1), st.text(string.printable, max_size=40)), min_size=1, max_size=6
    ).map(lambda edits: "".join(_edit_lines(lines, edits)).encode())

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(parse, path)[1]

    fuzz(st.one_of(damage(seed), edited_lines), check, tally)


def _edit_lines(lines: list[str], edits: list[tuple[int, str]]) -> list[str]:
    out = list(lines)
    for i, text in edits:
        out[i] = text + "\n"
    return out


# -- AMASS --------------------------------------------------------------------------------------------
def test_amass_npz(samples, work, tally):
    path, seed = seeded(work, samples / "amass" / "SampleX" / "s03" / "walk_03_stageii.npz", "walk_03_stageii.npz")

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(load_motion, path)[1]

    fuzz(damage(seed), check, tally)


# -- shards -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_shard(tmp_path_factory) -> Path:
    """A shard folder of one AMASS shard (8 segments, 90 kB) and its manifest, written without Ray."""
    from shards_fakes import CLIP, SEGMENT, make_store

    from ingest.store import MotionStore
    from shards.manifest import build_totals, write_manifest
    from shards.writer import plan_shards, write_shard

    root = tmp_path_factory.mktemp("fuzz_shards")
    make_store(root / "store", {("amass", "train"): [44, 23, 3, 30]})
    plans = plan_shards(MotionStore.open(str(root / "store")), "amass", SEGMENT, CLIP, 1 << 30, 4)
    records = {
        p.name: write_shard(str(root / "store"), None, str(root / "shards"), p, "float32", (CLIP,)) for p in plans
    }
    manifest = {"version": 1, "segment_len": SEGMENT, "clip_len": CLIP, "dtype": "float32", "count_clip_lens": [CLIP]}
    write_manifest(root / "shards", {**manifest, "shards": records, "totals": build_totals(records)})
    return root / "shards"


def test_shard_stream(one_shard, work, tally):
    """A damaged shard, streamed exactly once or resampled (from a random segment, :func:`seek_sample`), with
    the default ``max_corrupt=0``: the epoch's ``len(loader)`` batches of finite poses with the shard not found
    corrupt, or the stream's RuntimeError naming the shard folder (after a warning naming the shard, counted
    once, when it was found corrupt)."""
    shards = work / "shards"
    shutil.copytree(one_shard, shards)
    (name,) = load_manifest(shards)["shards"]
    path, seed = shards / name, (one_shard / name).read_bytes()

    def check(args):
        data, resampled = args
        path.write_bytes(data)
        options = LoaderOptions(
            datasets=["amass"], batch_size=4, resampled=resampled, steps_per_epoch=3 if resampled else None
        )
        loader = make_loader(shards, options)
        batches, outcome = 0, "result"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for batch in loader:
                    assert all(torch.isfinite(batch[k]).all() for k in ("pose2d", "pose3d"))
                    batches += 1
            except RuntimeError as exc:  # too many corrupt shards, or none left to read (say, a tar of zeros)
                assert str(shards) in str(exc) and "python -m shards verify" in str(exc), exc
                assert loader.corrupt_shards <= 1, f"one shard counted {loader.corrupt_shards} times"
                if loader.corrupt_shards:
                    assert any(str(path) in str(w.message) for w in caught), "no warning names the shard"
                outcome = "RuntimeError"
        if outcome == "result":
            assert (loader.corrupt_shards, batches) == (0, len(loader)), (loader.corrupt_shards, batches, len(loader))
        assert sorted(path.parent.iterdir()) == [path], "the stream wrote beside its shard"
        return outcome

    fuzz(st.tuples(damage(seed), st.booleans()), check, tally)


def test_shard_manifest(one_shard, work, tally):
    """A damaged ``manifest.json``: :func:`make_loader` gives a loader or a ValueError / KeyError / OSError
    naming the manifest."""
    shards = work / "shards"
    shutil.copytree(one_shard, shards)
    path, seed = shards / "manifest.json", (one_shard / "manifest.json").read_bytes()

    def check(data):
        path.write_bytes(data)
        return read_or_refuse(lambda p: make_loader(p.parent, LoaderOptions(datasets=["amass"])), path)[1]

    fuzz(damage(seed), check, tally)


# -- configs ------------------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def test_config_loader(work, tally):
    """A config file is any YAML: the loader gives a config or a ValueError naming the file; what it accepts
    has finite numbers only."""
    path = work / "fuzz.yaml"
    shipped = dataclasses.asdict(PretrainConfig.defaults())
    keys = [(section, key) for section, values in shipped.items() if isinstance(values, dict) for key in values]
    edited = st.lists(st.tuples(st.sampled_from(keys), VALUES), min_size=1, max_size=4).map(
        lambda edits: yaml.safe_dump(_edit_config(shipped, edits)).encode()
    )
    texts = st.one_of(edited, st.builds(lambda v: yaml.safe_dump(v).encode(), VALUES), st.binary(max_size=200))

    def check(data):
        path.write_bytes(data)
        cfg, outcome = read_or_refuse(lambda p: config_settings.load(PretrainConfig, p), path)
        if cfg is not None:
            for section in config_settings.sections(PretrainConfig):
                for value in vars(getattr(cfg, section)).values():
                    assert not isinstance(value, float) or math.isfinite(value), f"{section}: accepted {value}"
        return outcome

    fuzz(texts, check, tally)


def _edit_config(shipped: dict, edits: list) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in shipped.items()}
    for (section, key), value in edits:
        out[section][key] = value
    return out
