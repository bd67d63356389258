"""Pictures of a lift: the 2D input beside the 3D result, as an animation and a still (matplotlib).

The 2D panel is the image frame (pixels, y down), joints filled by interpolation drawn hollow; the 3D panel
is the camera frame turned upright for viewing: x to the right, camera depth z into the page, and -y up, in
metres around the pelvis. Left limbs are blue, right limbs red. Animations are MP4 through matplotlib's
``FFMpegWriter`` where an ffmpeg is found (on the PATH, or the binary of the ``imageio-ffmpeg`` package,
``pip install posemill[video]``), else GIF through ``PillowWriter`` (Pillow is a matplotlib dependency).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ingest.atomic import atomic_path  # noqa: E402
from ingest.skeleton import JointSet  # noqa: E402
from shards import codec  # noqa: E402

if TYPE_CHECKING:
    from finetune.infer import Lifted

LEFT, RIGHT, CENTRE = "tab:blue", "tab:red", "0.2"


def ffmpeg_path() -> str | None:
    """An ffmpeg binary: the PATH's, else imageio-ffmpeg's, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _bone_colours(joint_set: JointSet) -> list[str]:
    left, right = set(joint_set.left), set(joint_set.right)
    return [LEFT if c in left else RIGHT if c in right else CENTRE for _, c in joint_set.bones]


class _Figure:
    """The two panels and their artists, updated in place frame by frame."""

    def __init__(self, joint_set: JointSet, image_size: tuple[float, float], radius: float = 1.0):
        self.joint_set = joint_set
        self.fig = plt.figure(figsize=(9, 4.5), dpi=80)
        self.ax2 = self.fig.add_subplot(1, 2, 1)
        self.ax2.set(xlim=(0, image_size[0]), ylim=(image_size[1], 0), aspect="equal", title="2D input (pixels)")
        self.ax3 = self.fig.add_subplot(1, 2, 2, projection="3d")
        r = radius
        self.ax3.set(xlim=(-r, r), ylim=(-r, r), zlim=(-r, r), xlabel="x (m)", ylabel="z (m)", zlabel="-y (m)")
        self.ax3.set_title("3D, camera frame, root-relative")
        self.ax3.view_init(elev=15, azim=-70)
        colours = _bone_colours(joint_set)
        self.lines2 = [self.ax2.plot([], [], color=c, lw=2)[0] for c in colours]
        self.lines3 = [self.ax3.plot([], [], [], color=c, lw=2)[0] for c in colours]
        self.filled = self.ax2.scatter([], [], s=30, facecolors="none", edgecolors="k", label="interpolated")
        self.detected = self.ax2.scatter([], [], s=10, c="k")
        self.text = self.ax2.text(0.02, 0.02, "", transform=self.ax2.transAxes)
        self.fig.tight_layout()

    def draw(self, xy: np.ndarray, interpolated: np.ndarray, xyz: np.ndarray | None, label: str) -> None:
        """xy (J, 2) pixels, interpolated (J,) bool, xyz (J, 3) metres or None (no lift in this frame)."""
        for line, (p, c) in zip(self.lines2, self.joint_set.bones, strict=True):
            line.set_data(xy[[p, c], 0], xy[[p, c], 1])
        self.filled.set_offsets(xy[interpolated] if interpolated.any() else np.empty((0, 2)))
        self.detected.set_offsets(xy[~interpolated] if (~interpolated).any() else np.empty((0, 2)))
        for line, (p, c) in zip(self.lines3, self.joint_set.bones, strict=True):
            if xyz is None:
                line.set_data_3d([], [], [])
            else:
                line.set_data_3d(xyz[[p, c], 0], xyz[[p, c], 2], -xyz[[p, c], 1])
        self.text.set_text(label)


def _frames(result: Lifted, joint_set: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """The 2D (T, J, 2) and its interpolated mask (T, J) in ``joint_set``'s joints."""
    xy = codec.select_joints(result.filled.pose2d, joint_set)
    mask = codec.select_joints(result.filled.interpolated[..., None], joint_set)[..., 0]
    return xy, mask


def render_person(
    stem: str | Path, result: Lifted, joint_set: JointSet, image_size: tuple[float, float], fps: float
) -> str:
    """Animate one person's lift (every input frame at ``fps``) into ``STEM.mp4`` (or ``STEM.gif`` without an
    ffmpeg encoder), and write the middle lifted frame as ``STEM.png``; with a progress bar. Returns a short
    description of what was written. Frames outside every segment show nothing."""
    stem = Path(stem)
    xy, mask = _frames(result, joint_set)
    fig = _Figure(joint_set, image_size)
    total = len(xy)

    def update(t: int) -> list:
        xyz = result.pose3d[t] if result.lifted[t] else None
        fig.draw(np.nan_to_num(xy[t], nan=-1e4), mask[t], xyz, f"frame {t} / {total}")
        return fig.lines2 + fig.lines3

    ffmpeg = ffmpeg_path()
    if ffmpeg:
        matplotlib.rcParams["animation.ffmpeg_path"] = ffmpeg
        path, writer = stem.with_suffix(".mp4"), animation.FFMpegWriter(fps=fps, codec="h264")
    else:
        path, writer = stem.with_suffix(".gif"), animation.PillowWriter(fps=fps)
    anim = animation.FuncAnimation(fig.fig, update, frames=total, blit=False)
    # the encoders choose the container by the file's extension, so the atomic write is a named file in a
    # private temporary folder beside the target, then a rename
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.tmp-") as tmp:
        with tqdm(total=total, desc=f"render {path.name}", unit="frame") as bar:
            anim.save(str(Path(tmp) / path.name), writer=writer, progress_callback=lambda i, n: bar.update(1))
        os.replace(Path(tmp) / path.name, path)
    middle = np.flatnonzero(result.lifted)
    update(int(middle[len(middle) // 2]))
    with atomic_path(stem.with_suffix(".png")) as tmp:
        fig.fig.savefig(tmp, format="png")
    plt.close(fig.fig)
    return f"{path.name} and {stem.with_suffix('.png').name}"


def plot_action_mpjpe(result: dict, path: str | Path, title: str = "") -> Path:
    """A bar chart of per-action MPJPE and P-MPJPE (mm) from an evaluation result
    (:func:`finetune.evaluate.evaluate_h36m`'s ``actions`` and ``average``), written atomically as PNG."""
    actions = list(result["actions"])
    names = [*actions, "Avg"]
    rows = [*(result["actions"][a] for a in actions), result["average"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 3.5), dpi=100)
    ax.bar(x - 0.2, [r["mpjpe"] for r in rows], 0.4, label="MPJPE")
    ax.bar(x + 0.2, [r["p_mpjpe"] for r in rows], 0.4, label="P-MPJPE")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set(ylabel="mm", title=title or "Human3.6M per action")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
