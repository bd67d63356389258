"""Camera model: projection against hand-computed values, round trips, published calibration."""

import h5py
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ingest.camera import Camera, h36m_published_cameras


def simple_camera(**kw):
    base = dict(R=np.eye(3), T=np.zeros(3), f=np.array([1000.0, 1000.0]), c=np.array([500.0, 500.0]))
    return Camera(**(base | kw))


def test_pinhole_projection_by_hand():
    # x = 0.5 / 2 = 0.25, y = -0.25 / 2 = -0.125 -> (1000 * 0.25 + 500, 1000 * -0.125 + 500)
    uv = simple_camera().project(np.array([0.5, -0.25, 2.0]))
    np.testing.assert_allclose(uv, [750.0, 375.0])


def test_distorted_projection_by_hand():
    cam = simple_camera(k=np.array([0.1, 0.0, 0.0]), p=np.array([0.01, 0.02]))
    # r2 = 0.078125; radial = 1.0078125; tan = p1*y + p2*x = 0.00375
    # xd = 0.25 * 1.0115625 + p2 * r2 = 0.254453125; yd = -0.125 * 1.0115625 + p1 * r2 = -0.1256640625
    uv = cam.project(np.array([0.5, -0.25, 2.0]))
    np.testing.assert_allclose(uv, [754.453125, 374.3359375], atol=1e-9)
    np.testing.assert_allclose(cam.project(np.array([0.5, -0.25, 2.0]), distort=False), [750.0, 375.0])


def test_world_camera_round_trip_and_centre():
    rng = np.random.default_rng(0)
    cam = simple_camera(R=Rotation.random(random_state=1).as_matrix(), T=np.array([1.0, -2.0, 1.5]))
    X = rng.normal(size=(10, 17, 3))
    np.testing.assert_allclose(cam.camera_to_world(cam.world_to_camera(X)), X, atol=1e-12)
    np.testing.assert_allclose(cam.world_to_camera(cam.T), np.zeros(3), atol=1e-12)  # T is the centre


def test_meta_round_trip():
    cam = h36m_published_cameras()["S9"][2]
    back = Camera.from_meta(cam.to_meta())
    for name in ("R", "T", "f", "c", "k", "p"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cam, name))
    assert (back.width, back.height, back.id) == (cam.width, cam.height, cam.id)


def test_published_calibration_shape():
    cams = h36m_published_cameras()
    assert sorted(cams) == ["S1", "S11", "S5", "S6", "S7", "S8", "S9"]
    for subject_cams in cams.values():
        assert [c.id for c in subject_cams] == ["54138969", "55011271", "58860488", "60457274"]
        for c in subject_cams:
            np.testing.assert_allclose(c.R @ c.R.T, np.eye(3), atol=1e-6)
            assert 2.5 < np.linalg.norm(c.T) < 7.5  # metres from the capture area's centre


@pytest.mark.real_data
def test_published_calibration_equals_cameras_h5(real_data):
    published = h36m_published_cameras()
    with h5py.File(real_data / "h36m" / "cameras.h5") as fh:
        for n in (1, 11):
            for m, cam in enumerate(published[f"S{n}"], start=1):
                g = fh[f"subject{n}/camera{m}"]
                np.testing.assert_allclose(cam.R, g["R"][:].T, atol=1e-6)
                np.testing.assert_allclose(cam.T, g["T"][:].ravel() / 1000, atol=1e-6)
                np.testing.assert_allclose(cam.f, g["f"][:].ravel(), atol=1e-3)
                np.testing.assert_allclose(cam.c, g["c"][:].ravel(), atol=1e-3)
                np.testing.assert_allclose(cam.k, g["k"][:].ravel(), atol=1e-7)
                np.testing.assert_allclose(cam.p, g["p"][:].ravel(), atol=1e-7)  # (p1, p2) order
