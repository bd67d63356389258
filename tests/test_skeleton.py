"""Joint sets: maps, symmetry, and the synthetic skeleton's invariants."""

import numpy as np
from invariants import bone_lengths

from ingest.samples.motion import walking_motion
from ingest.skeleton import H36M16, H36M17, H36M17_TO_16, H36M32, to_h36m17


def test_h36m17_names_follow_the_32_joint_map():
    for i, j in enumerate([0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]):
        assert H36M17.joints[i] == H36M32.joints[j]


def test_16_joint_set_drops_neck_nose():
    assert len(H36M16) == 16 and "neck_nose" not in H36M16.joints
    assert [H36M17.joints[i] for i in H36M17_TO_16] == list(H36M16.joints)
    assert H36M16.parents[H36M16.index("head")] == H36M16.index("thorax")


def test_symmetry_pairs_mirror_names():
    for joint_set in (H36M32, H36M17, H36M16):
        for left, right in zip(joint_set.left, joint_set.right, strict=True):
            assert joint_set.joints[left].replace("left", "right") == joint_set.joints[right]
        perm = joint_set.flip_permutation()
        np.testing.assert_array_equal(perm[perm], np.arange(len(joint_set)))


def test_parents_map_consistently_to_17():
    # The 17-joint parent of each joint is the nearest kept ancestor in the 32-joint tree.
    kept = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
    for i, j in enumerate(kept):
        p = H36M32.parents[j]
        while p >= 0 and p not in kept:
            p = H36M32.parents[p]
        expected = kept.index(p) if p >= 0 else -1
        if H36M17.joints[i] in ("left_shoulder", "right_shoulder"):
            expected = H36M17.index("thorax")  # VideoPose3D rewires the shoulders to the thorax
        assert H36M17.parents[i] == expected


def test_synthetic_motion_has_constant_bones_and_moves():
    motion = walking_motion(300, seed=7)
    bones = bone_lengths(motion, H36M32)
    assert np.ptp(bones, axis=0).max() < 1e-12
    assert np.linalg.norm(motion[-1, 0] - motion[0, 0]) > 0.3  # the pelvis travels
    x17 = to_h36m17(motion, "h36m32")
    assert (x17[:, H36M17.index("head"), 2] > x17[:, 0, 2] + 0.4).all()  # upright, z up
    # Real chirality (as measured on Human3.6M): forward x left points up.
    forward = x17[:, H36M17.index("neck_nose")] - x17[:, H36M17.index("thorax")]
    left = x17[:, H36M17.index("left_hip")] - x17[:, H36M17.index("right_hip")]
    assert (np.cross(forward, left)[:, 2] > 0).mean() > 0.95
