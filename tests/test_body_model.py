"""Body-model loading (both layouts), regressors, and the fast path against the full smplx forward pass."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ingest.body_model import (
    SMPLH52,
    SMPLX55,
    find_model_file,
    load_body_model,
    load_regressor,
    smplx_joint_mapping,
)
from ingest.samples.stand_in import rest_joints, write_stand_in
from ingest.skeleton import H36M17


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Stand-in models in both layouts, in separate folders, with regressors."""
    root = tmp_path_factory.mktemp("body_models")
    write_stand_in(root / "amass", layouts=("amass",))
    write_stand_in(root / "smplx", layouts=("smplx",), genders=("male", "female"))
    return root


def random_motion(joints: int, frames: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.6, size=(frames, joints, 3))
    pose[:5] *= 4  # some rotations beyond pi
    trans = rng.uniform(-6, 6, size=(frames, 3))
    return pose, trans, rng.normal(size=16)


@pytest.mark.parametrize("layout", ["amass", "smplx"])
@pytest.mark.parametrize("model_type", ["smplh", "smplx"])
def test_fast_path_equals_full_forward(models, layout, model_type):
    body = load_body_model(models / layout, model_type, "male")
    assert body.regressor.kind == "vertices" and len(body.regressor.support) < body.num_vertices / 4
    pose, trans, betas = random_motion(len(body.joint_set), seed=len(layout))
    fast = body.joints_fast(pose, betas, trans, chunk=25)
    full = body.joints_full(pose, betas, trans, chunk=30)
    assert fast.shape == (64, 17, 3)
    assert np.abs(fast - full).max() < 1e-6


def test_fast_path_with_rows_not_summing_to_one(models, tmp_path):
    """Like the real regressor (rows 0.9996 to 1.00005): the translation is weighted by each row's sum."""
    num_vertices = load_body_model(models / "amass", "smplh", "male").num_vertices
    rng = np.random.default_rng(7)
    weights = np.zeros((17, num_vertices))
    for row in weights:
        row[rng.choice(num_vertices, size=6, replace=False)] = rng.uniform(0.1, 0.3, size=6)
    path = tmp_path / "J_regressor_h36m_random.npy"
    np.save(path, weights)
    body = load_body_model(models / "amass", "smplh", "male", path)
    pose, trans, betas = random_motion(52, frames=20, seed=9)
    trans += 40.0
    assert np.abs(body.joints_fast(pose, betas, trans) - body.joints_full(pose, betas, trans)).max() < 1e-6


def test_smplx_joint_mapping_when_no_vertex_regressor(models, tmp_path):
    folder = tmp_path / "bm"
    write_stand_in(folder, layouts=("smplx",), genders=("neutral",), regressors=False)
    body = load_body_model(folder, "smplx", "neutral")
    assert body.regressor.kind == "joints"
    pose, trans, betas = random_motion(55, seed=3)
    assert np.abs(body.joints_fast(pose, betas, trans) - body.joints_full(pose, betas, trans)).max() < 1e-6
    # At rest (zero pose and betas) the mapping gives the rest joints it names (stand-in: neutral 0.965).
    rest, _ = rest_joints(SMPLX55)
    rest *= 0.965
    got = body.joints_fast(np.zeros((1, 55, 3)), np.zeros(16), np.array([[1.0, 2.0, 3.0]]))[0]
    j = SMPLX55.index
    assert np.allclose(got[H36M17.index("left_knee")], rest[j("left_knee")] + [1, 2, 3], atol=1e-6)
    assert np.allclose(got[H36M17.index("head")], 2 * rest[j("head")] - rest[j("neck")] + [1, 2, 3], atol=1e-6)
    assert np.allclose(smplx_joint_mapping().sum(axis=1), 1.0)


def test_layouts_give_the_same_joints(models):
    for model_type in ("smplh", "smplx"):
        a = load_body_model(models / "amass", model_type, "female")
        b = load_body_model(models / "smplx", model_type, "female")
        assert a.path.name == "model.npz" and b.path.suffix in (".pkl", ".npz") and b.path.name != "model.npz"
        pose, trans, betas = random_motion(len(a.joint_set), frames=16)
        assert np.abs(a.joints_fast(pose, betas, trans) - b.joints_fast(pose, betas, trans)).max() < 1e-9


def test_gender_selects_the_model(models):
    male = load_body_model(models / "amass", "smplh", "male")
    female = load_body_model(models / "amass", "smplh", "female")
    zero = (np.zeros((1, 52, 3)), np.zeros(16), np.zeros((1, 3)))
    # At rest with zero betas the female stand-in is the male one scaled by 0.93 about the origin.
    assert np.allclose(female.joints_fast(*zero), 0.93 * male.joints_fast(*zero), atol=1e-6)
    assert male.stand_in and female.stand_in and male.num_betas == 16


def test_betas_truncated_or_padded(models):
    body = load_body_model(models / "amass", "smplh", "male")
    pose, trans, betas = random_motion(52, frames=8)
    longer = np.concatenate([betas, [5.0, -5.0, 3.0]])
    assert np.array_equal(body.joints_fast(pose, longer, trans), body.joints_fast(pose, betas, trans))
    short = betas[:4]
    padded = np.concatenate([short, np.zeros(12)])
    assert np.array_equal(body.joints_fast(pose, short, trans), body.joints_fast(pose, padded, trans))
    assert body.fit_betas(short).shape == (1, 16)


def test_missing_model_names_the_files_looked_for(models):
    with pytest.raises(FileNotFoundError) as err:
        find_model_file(models / "smplx", "smplh", "neutral")
    for name in ("SMPLH_NEUTRAL.npz", "SMPLH_NEUTRAL.pkl", "neutral/model.npz"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="gender"):
        find_model_file(models / "smplx", "smplh", "robot")


def test_regressor_errors(models, tmp_path):
    bad = tmp_path / "J_regressor_h36m_bad.npy"
    np.save(bad, np.ones((17, 10)))
    with pytest.raises(ValueError, match="J_regressor_h36m_bad.npy.*expected \\(17, 99\\)"):
        load_regressor(bad, 99)
    folder = tmp_path / "no_regressor"
    write_stand_in(folder, layouts=("amass",), genders=("male",), regressors=False)
    with pytest.raises(FileNotFoundError, match="--regressor"):
        load_body_model(folder, "smplh", "male")
    # An explicit regressor file is used even when the folder has none.
    body = load_body_model(folder, "smplh", "male", models / "amass" / "J_regressor_h36m_stand_in_smplh.npy")
    assert body.regressor.kind == "vertices"


def test_stand_in_flag_and_trees(models, tmp_path):
    path = models / "smplx" / "smplh" / "SMPLH_MALE.pkl"
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    data.pop("stand_in_body_model")
    plain = tmp_path / "plain"
    (plain / "smplh").mkdir(parents=True)
    with open(plain / "smplh" / "SMPLH_MALE.pkl", "wb") as fh:
        pickle.dump(data, fh)
    body = load_body_model(plain, "smplh", "male", models / "smplx" / "J_regressor_h36m_stand_in_smplh.npy")
    assert not body.stand_in
    assert body.module.parents.tolist() == list(SMPLH52.parents)
    assert load_body_model(models / "amass", "smplx", "male").module.parents.tolist() == list(SMPLX55.parents)
    # Rest joints: an upright adult, left side at +x (SMPL rest frame), 52 / 55 joints.
    for joint_set in (SMPLH52, SMPLX55):
        rest, _ = rest_joints(joint_set)
        j = joint_set.index
        assert 1.3 < rest[j("head"), 1] - rest[j("left_ankle"), 1] < 1.9
        assert rest[j("left_wrist"), 0] > 0.5 and rest[j("right_wrist"), 0] < -0.5
        flip = joint_set.flip_permutation()
        assert np.array_equal(flip[flip], np.arange(len(joint_set))) and flip[j("left_thumb3")] == j("right_thumb3")
        # Mirroring the rest skeleton (x -> -x) and swapping sides gives it back: a symmetric body.
        assert np.allclose(rest[flip] * [-1, 1, 1], rest)


def test_real_h36m_regressor(real_data):
    path = real_data / "regressors" / "J_regressor_h36m_correct.npy"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    regressor = load_regressor(path, 6890)
    assert regressor.kind == "vertices" and len(regressor.support) == 101
    assert np.allclose(regressor.weights.sum(axis=1), 1.0, atol=1e-3)  # 0.99963 to 1.00005 in this file
    with pytest.raises(ValueError, match="expected \\(17, 10475\\)"):
        load_regressor(path, 10475)  # not a SMPL-X regressor
