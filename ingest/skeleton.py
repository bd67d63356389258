"""Named joint sets, index maps between them, and left/right symmetry pairs.

The store's canonical order is Human3.6M-17 (DESIGN.md, "Canonical conventions"). Every other joint set
is mapped to it here, so readers only ever call :func:`to_h36m17` style maps and never hard-code indices.

Sources: the Human3.6M 32-joint skeleton and its 17 kept joints follow the 3d-pose-baseline release
(Martinez et al. 2017, ``data_utils.H36M_NAMES``) and VideoPose3D (``common/h36m_dataset.py``: parents,
``remove_joints([4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31])``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointSet:
    """An ordered joint set.

    Attributes:
        name: registry key, e.g. ``"h36m17"``.
        joints: joint names in order (length J).
        parents: parent index of each joint, -1 for the root (length J).
        left, right: indices of left joints and of their right counterparts, pairwise
            (``left[i]`` mirrors ``right[i]``), used for horizontal flipping.
    """

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        """Index of ``joint``; raises KeyError naming the joint set when absent."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"joint {joint!r} is not in joint set {self.name!r}") from None

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) index pairs, one per non-root joint."""
        return [(p, j) for j, p in enumerate(self.parents) if p >= 0]

    def flip_permutation(self) -> np.ndarray:
        """(J,) int permutation that swaps every left joint with its right counterpart."""
        perm = np.arange(len(self))
        perm[list(self.left)] = self.right
        perm[list(self.right)] = self.left
        return perm


# fmt: off
H36M17 = JointSet(
    name="h36m17",
    joints=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
)

# MPM drops neck/nose when it mixes datasets; head then hangs from the thorax.
H36M16 = JointSet(
    name="h36m16",
    joints=tuple(j for j in H36M17.joints if j != "neck_nose"),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 10, 11, 12),
    right=(1, 2, 3, 13, 14, 15),
)

# The 32 joints of the original Human3.6M release. Joints 11, 16, 20-24 and 28-31 duplicate the position
# of another joint or are hand/toe sites; names of the 17 kept ones follow Martinez' H36M_NAMES.
H36M32 = JointSet(
    name="h36m32",
    joints=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "right_toe", "right_toe_site",
        "left_hip", "left_knee", "left_ankle", "left_toe", "left_toe_site",
        "spine_base", "spine", "thorax", "neck_nose", "head",
        "left_shoulder_root", "left_shoulder", "left_elbow", "left_wrist", "left_hand_root",
        "left_thumb", "left_thumb_site", "left_hand_site",
        "right_shoulder_root", "right_shoulder", "right_elbow", "right_wrist", "right_hand_root",
        "right_thumb", "right_thumb_site", "right_hand_site",
    ),
    parents=(-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12,
             16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30),
    left=(6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23),
    right=(1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31),
)
# fmt: on

JOINT_SETS: dict[str, JointSet] = {s.name: s for s in (H36M32, H36M17, H36M16)}

# Index of each Human3.6M-17 joint in another joint set (H36M17 order). Readers add their sets here.
TO_H36M17: dict[str, np.ndarray] = {
    "h36m32": np.array([0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]),
    "h36m17": np.arange(17),
}

# Index of each H36M16 joint in H36M17 (drops neck/nose).
H36M17_TO_16 = np.array([i for i, j in enumerate(H36M17.joints) if j != "neck_nose"])


def to_h36m17(joints: np.ndarray, source: str) -> np.ndarray:
    """Reorder joints from joint set ``source`` to Human3.6M-17.

    Args:
        joints: (..., J_source, C) array, any unit.
        source: key of :data:`TO_H36M17`.

    Returns:
        (..., 17, C) array, a copy.

    Raises:
        KeyError: unknown joint set. ValueError: wrong joint count.
    """
    index = TO_H36M17[source]
    expected = len(JOINT_SETS[source]) if source in JOINT_SETS else None
    if expected is not None and joints.shape[-2] != expected:
        raise ValueError(f"expected {expected} joints of {source!r}, got array of shape {joints.shape}")
    return joints[..., index, :].copy()


# MPI-INF-3DHP (Mehta et al. 2017). Names, order and parents (the toolkit's "o1" parents, made 0-based,
# the root's self-reference replaced by -1) follow the official toolkit ``util/mpii_get_joint_set.m``
# ('all': 28 joints of the training set's annot.mat) and ``test_util/mpii_get_joints.m`` ('relevant': the
# 17 joints of the test set's annot_data.mat, "Human3.6m joints in CPM order").
# fmt: off
MPI_INF_3DHP28 = JointSet(
    name="mpi_inf_3dhp28",
    joints=(
        "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
        "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
        "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
    ),
    parents=(2, 0, 3, 4, -1, 1, 5, 6, 5, 8, 9, 10, 11, 5, 13, 14, 15, 16, 4, 18, 19, 20, 21, 4, 23, 24, 25, 26),
    left=(8, 9, 10, 11, 12, 18, 19, 20, 21, 22),
    right=(13, 14, 15, 16, 17, 23, 24, 25, 26, 27),
)

# The toolkit's 'relevant' joint indices (1-based) [8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5,
# 4, 7], 0-based: the index of each test-set joint in MPI_INF_3DHP28 (also P-STMO ``data_to_npz_3dhp.py`` and
# mmpose ``preprocess_mpi_inf_3dhp.py`` ``joints_17``).
MPI_INF_3DHP28_TO_17 = np.array([7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6])

MPI_INF_3DHP17 = JointSet(
    name="mpi_inf_3dhp17",
    joints=tuple(MPI_INF_3DHP28.joints[i] for i in MPI_INF_3DHP28_TO_17),
    parents=(1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    left=(5, 6, 7, 11, 12, 13),
    right=(2, 3, 4, 8, 9, 10),
)

JOINT_SETS[MPI_INF_3DHP28.name] = MPI_INF_3DHP28
JOINT_SETS[MPI_INF_3DHP17.name] = MPI_INF_3DHP17
# 3DHP head_top -> H36M head, 3DHP head -> H36M neck/nose, 3DHP neck -> H36M thorax, 3DHP spine -> H36M spine:
# the correspondence the toolkit's 'relevant' set ("Human3.6m compatible") encodes and that P-STMO / MPM
# use when they reorder the test set to Human3.6M order.
TO_H36M17["mpi_inf_3dhp28"] = np.array([4, 23, 24, 25, 18, 19, 20, 3, 5, 6, 7, 9, 10, 11, 14, 15, 16])
TO_H36M17["mpi_inf_3dhp17"] = np.array([14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4])


# SMPL family (smplx's joint order, ``smplx/joint_names.py``; parents from the models' kintree_table).
# fmt: on
# fmt: off
_BODY = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# fmt: on
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")  # smplx's order (smplx/joint_names.py)


def _hand(side: str, wrist: int, first: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Names and parents of one hand's 15 joints, the first one at index ``first``."""
    names, parents = [], []
    for f, finger in enumerate(_FINGERS):
        for k in range(3):
            names.append(f"{side}_{finger}{k + 1}")
            parents.append(wrist if k == 0 else first + 3 * f + k - 1)
    return tuple(names), tuple(parents)


def _joint_set(name: str, face: bool) -> JointSet:
    """SMPL-H (52) or SMPL-X (55) kinematic tree, joint order of ``smplx`` (``joint_names.JOINT_NAMES``)."""
    names, parents = list(_BODY), list(_BODY_PARENTS)
    if face:
        names += ["jaw", "left_eye", "right_eye"]
        parents += [15, 15, 15]
    for side, wrist in (("left", 20), ("right", 21)):
        hand_names, hand_parents = _hand(side, wrist, len(names))
        names += hand_names
        parents += hand_parents
    left = [i for i, n in enumerate(names) if n.startswith("left_")]
    right = [names.index("right_" + names[i][len("left_") :]) for i in left]
    return JointSet(name=name, joints=tuple(names), parents=tuple(parents), left=tuple(left), right=tuple(right))


# SMPL-H (52 joints) and SMPL-X (55) body models. They map to Human3.6M-17 through joint regressors on the
# mesh or a weighted joint mapping (``ingest.body_model``), not through an index map.
SMPLH52 = _joint_set("smplh52", face=False)
SMPLX55 = _joint_set("smplx55", face=True)
JOINT_SETS[SMPLH52.name] = SMPLH52
JOINT_SETS[SMPLX55.name] = SMPLX55


# MPII (Andriluka et al. 2014), the 16 joints of the Stacked Hourglass detections of Human3.6M (Martinez et al.
# 2017 release, ``S*/StackedHourglass/*.h5``; ``../shared/data/README.md``). Names and order: the MPII
# annotation's joint ids 0-15; parents: the MPII limb tree rooted at the pelvis.
# fmt: off
MPII16 = JointSet(
    name="mpii16",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
        "left_elbow", "left_wrist",
    ),
    parents=(1, 2, 6, 6, 3, 4, -1, 6, 7, 8, 11, 12, 7, 7, 13, 14),
    left=(3, 4, 5, 13, 14, 15),
    right=(2, 1, 0, 12, 11, 10),
)
JOINT_SETS[MPII16.name] = MPII16

# Index of each Human3.6M-17 joint in MPII16, neck/nose (H36M17 index 9) excepted: 3d-pose-baseline
# ``data_utils.py`` (``SH_NAMES`` and ``SH_TO_GT_PERM = [6, 2, 1, 0, 3, 4, 5, 7, 8, 9, 13, 14, 15, 12, 11, 10]``,
# the permutation VideoPose3D's ``prepare_data_2d_h36m_sh.py`` also applies), which reads MPII's thorax as
# Human3.6M's spine, the upper neck as its thorax and the head top as its head.
MPII16_TO_H36M17 = np.array([6, 2, 1, 0, 3, 4, 5, 7, 8, -1, 9, 13, 14, 15, 12, 11, 10])
# fmt: on
NECK_NOSE = H36M17.index("neck_nose")


def mpii16_to_h36m17(joints: np.ndarray) -> np.ndarray:
    """Stacked Hourglass MPII-16 joints (..., 16, C) -> Human3.6M-17 (..., 17, C) by
    :data:`MPII16_TO_H36M17`. MPII has no neck/nose: it is placed midway between the mapped thorax (MPII
    upper neck) and head (MPII head top), a stand-in that 16-joint networks drop (3d-pose-baseline leaves the
    joint out; callers mark it with zero confidence). Raises ValueError for another joint count."""
    if joints.shape[-2] != len(MPII16):
        raise ValueError(f"expected {len(MPII16)} joints of 'mpii16', got array of shape {joints.shape}")
    out = joints[..., np.maximum(MPII16_TO_H36M17, 0), :].copy()
    out[..., NECK_NOSE, :] = (joints[..., MPII16.index("upper_neck"), :] + joints[..., MPII16.index("head_top"), :]) / 2
    return out
