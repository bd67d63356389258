"""A plausible moving skeleton for the embedded default data and the tests.

Forward kinematics on the Human3.6M 32-joint tree (``ingest.skeleton.H36M32``) with fixed bone offsets, so
bone lengths are constant by construction, driven by smooth periodic joint angles (a walking-like gait:
hip and knee flexion, arm swing, elbow bend, a little torso twist) while the pelvis travels around a circle
with a small vertical bob. Never random noise: the seed only varies gait frequency, amplitudes, radius and
phase between takes.

Output frame: world coordinates, metres, z up, like Human3.6M's world (which is in millimetres).
Bone lengths are those of Human3.6M subject S1 (measured on the real ``Walking 1.h5``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ingest.conventions import STORE_FPS
from ingest.skeleton import H36M32

# Rest-pose offsets from the parent joint, metres, in the body frame: +x = subject's right, +y = forward,
# +z = up (right-handed, so the skeleton has a real body's chirality). Zero offsets are Human3.6M's
# duplicated joints (spine base = pelvis, shoulder roots = thorax...).
_OFFSETS = np.array(
    [
        [0, 0, 0],  # 0 pelvis (root)
        [0.133, 0, 0],  # 1 right hip
        [0, 0, -0.443],  # 2 right knee
        [0, 0, -0.454],  # 3 right ankle
        [0, 0.13, -0.098],  # 4 right toe
        [0, 0.075, 0],  # 5 right toe site
        [-0.133, 0, 0],  # 6 left hip
        [0, 0, -0.443],  # 7 left knee
        [0, 0, -0.454],  # 8 left ankle
        [0, 0.13, -0.098],  # 9 left toe
        [0, 0.075, 0],  # 10 left toe site
        [0, 0, 0],  # 11 spine base
        [0, 0, 0.233],  # 12 spine
        [0, 0, 0.257],  # 13 thorax
        [0, 0.06, 0.105],  # 14 neck/nose
        [0, -0.02, 0.113],  # 15 head
        [0, 0, 0.257],  # 16 left shoulder root (= thorax)
        [-0.151, 0, 0],  # 17 left shoulder
        [0, 0, -0.279],  # 18 left elbow
        [0, 0, -0.252],  # 19 left wrist
        [0, 0, 0],  # 20 left hand root
        [0, 0.1, 0],  # 21 left thumb
        [0, 0, -0.1],  # 22 left thumb site
        [0, 0, 0],  # 23 left hand site
        [0, 0, 0.257],  # 24 right shoulder root (= thorax)
        [0.151, 0, 0],  # 25 right shoulder
        [0, 0, -0.279],  # 26 right elbow
        [0, 0, -0.252],  # 27 right wrist
        [0, 0, 0],  # 28 right hand root
        [0, 0.1, 0],  # 29 right thumb
        [0, 0, -0.1],  # 30 right thumb site
        [0, 0, 0],  # 31 right hand site
    ]
)
_PELVIS_HEIGHT = 0.93  # metres


def walking_motion(frames: int, fps: float = STORE_FPS, seed: int = 0) -> np.ndarray:
    """World-frame joints of a walking skeleton.

    Args:
        frames: number of frames N.
        fps: frame rate the motion is sampled at (the gait itself is defined in seconds).
        seed: varies gait frequency (0.8-1.1 Hz), amplitudes, circle radius (1.0-1.8 m) and phase.

    Returns:
        (N, 32, 3) float64, metres, world coordinates (z up), Human3.6M-32 joint order. The pelvis stays
        within 1.8 m of the world origin horizontally, where Human3.6M's cameras look.
    """
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.8, 1.1)
    hip_amp, knee_amp, arm_amp = rng.uniform(0.35, 0.5), rng.uniform(0.6, 0.9), rng.uniform(0.25, 0.45)
    radius, phase0 = rng.uniform(1.0, 1.8), rng.uniform(0, 2 * np.pi)
    t = np.arange(frames) / fps
    phase = 2 * np.pi * freq * t

    # Local joint rotations as rotation vectors about the body-frame x axis (flexion) or z axis (twist).
    local = np.zeros((frames, 32, 3))
    for side, sign in (((1, 2), 1.0), ((6, 7), -1.0)):  # right leg, left leg in antiphase
        hip, knee = side
        local[:, hip, 0] = sign * hip_amp * np.sin(phase)
        local[:, knee, 0] = -knee_amp * np.clip(np.sin(phase - sign * np.pi / 2), 0, None) - 0.05
    for shoulder, elbow, sign in ((17, 18, 1.0), (25, 26, -1.0)):  # arms swing against the legs
        local[:, shoulder, 0] = sign * arm_amp * np.sin(phase)
        local[:, shoulder, 1] = sign * 0.12  # arms slightly away from the body
        local[:, elbow, 0] = 0.35 + 0.15 * np.sin(phase + sign * np.pi / 2)
    local[:, 12, 2] = 0.08 * np.sin(phase)  # torso twist
    local[:, 14, 0] = 0.05 * np.sin(2 * phase)  # head nod

    # Root: walk along a circle around the origin, heading tangent to it.
    omega = 0.25 * freq  # angular speed, rad/s
    angle = phase0 + omega * t
    root_pos = np.stack(
        [radius * np.cos(angle), radius * np.sin(angle), _PELVIS_HEIGHT + 0.02 * np.cos(2 * phase)], axis=-1
    )
    heading = angle  # body +y (forward) along the direction of travel
    root_rot = Rotation.from_rotvec(np.stack([np.zeros(frames), np.zeros(frames), heading], -1))

    glob = [None] * 32
    pos = np.zeros((frames, 32, 3))
    for j, parent in enumerate(H36M32.parents):
        rot = Rotation.from_rotvec(local[:, j])
        if parent < 0:
            glob[j], pos[:, j] = root_rot * rot, root_pos
        else:
            pos[:, j] = pos[:, parent] + glob[parent].apply(_OFFSETS[j])
            glob[j] = glob[parent] * rot
    return pos
