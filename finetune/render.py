"""Pictures of a lift: the 2D input beside the 3D result, as an animation and a still, and the per-action chart
of an evaluation (matplotlib).

The 2D panel is the image frame (pixels, y down; over the video's frames when one is given), joints filled by
interpolation drawn hollow; the 3D panel is the camera frame turned upright for viewing: x to the right,
camera depth z into the page, -y up, in metres around the pelvis, with the ground truth dashed in grey where
it is known. Left limbs are blue, right limbs red. Animations are MP4 through matplotlib's ``FFMpegWriter``
where an ffmpeg is found (on the PATH, or the binary of the ``imageio-ffmpeg`` package, ``pip install
posemill[video]``), else GIF through ``PillowWriter`` (Pillow is a matplotlib dependency). Reading a video
needs that ffmpeg too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ingest.atomic import atomic_path  # noqa: E402
from ingest.skeleton import JointSet  # noqa: E402

LEFT, RIGHT, CENTRE, TRUTH = "tab:blue", "tab:red", "0.2", "0.6"


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


def video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of a video file, (H, W, 3) uint8 RGB each, in order (imageio-ffmpeg's reader).

    Raises:
        OSError: no ffmpeg to read it with, or a file ffmpeg cannot read (naming it).
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        raise OSError(f"{path}: reading a video needs imageio-ffmpeg (pip install posemill[video])") from None
    try:
        frames = imageio_ffmpeg.read_frames(str(path))
        width, height = next(frames)["size"]
    except (RuntimeError, OSError, StopIteration) as exc:
        raise OSError(f"{path}: not a video ffmpeg can read ({' '.join(str(exc).split())[:200]})") from None
    for frame in frames:
        yield np.frombuffer(frame, np.uint8).reshape(height, width, 3)


def _bone_colours(joint_set: JointSet) -> list[str]:
    left, right = set(joint_set.left), set(joint_set.right)
    return [LEFT if c in left else RIGHT if c in right else CENTRE for _, c in joint_set.bones]


class _Figure:
    """The two panels and their artists, updated in place frame by frame."""

    def __init__(self, joint_set: JointSet, image_size: tuple[float, float], truth: bool, radius: float = 1.0):
        self.joint_set = joint_set
        self.fig = plt.figure(figsize=(9, 4.5), dpi=80)
        self.ax2 = self.fig.add_subplot(1, 2, 1)
        self.ax2.set(xlim=(0, image_size[0]), ylim=(image_size[1], 0), aspect="equal", title="2D input (pixels)")
        self.image = None
        self.ax3 = self.fig.add_subplot(1, 2, 2, projection="3d")
        ticks = [-radius, 0, radius]
        self.ax3.set(xlim=(-radius, radius), ylim=(-radius, radius), zlim=(-radius, radius))
        self.ax3.set(xticks=ticks, yticks=ticks, zticks=ticks, xlabel="x (m)", ylabel="z (m)", zlabel="-y (m)")
        self.ax3.set_box_aspect((1, 1, 1))
        self.ax3.set_title("3D, camera frame, root-relative" + (" (grey: truth)" if truth else ""))
        self.ax3.view_init(elev=15, azim=-70)
        colours = _bone_colours(joint_set)
        self.lines2 = [self.ax2.plot([], [], color=c, lw=2)[0] for c in colours]
        self.truth3 = [self.ax3.plot([], [], [], color=TRUTH, lw=1.5, ls="--")[0] for _ in colours] if truth else []
        self.lines3 = [self.ax3.plot([], [], [], color=c, lw=2)[0] for c in colours]
        self.filled = self.ax2.scatter([], [], s=30, facecolors="none", edgecolors="k")
        self.detected = self.ax2.scatter([], [], s=10, c="k")
        self.text = self.ax2.text(0.02, 0.02, "", transform=self.ax2.transAxes)
        self.fig.tight_layout()

    def _skeleton3d(self, lines: list, xyz: np.ndarray | None) -> None:
        for line, (p, c) in zip(lines, self.joint_set.bones, strict=True):
            if xyz is None or not np.isfinite(xyz).all():
                line.set_data_3d([], [], [])
            else:
                line.set_data_3d(xyz[[p, c], 0], xyz[[p, c], 2], -xyz[[p, c], 1])

    def draw(self, xy, interpolated, xyz, truth, label: str, image: np.ndarray | None = None) -> None:
        """xy (J, 2) pixels (NaN: nothing), interpolated (J,) bool, xyz and truth (J, 3) metres or None."""
        if image is not None:
            if self.image is None:
                self.image = self.ax2.imshow(image, zorder=0)
            else:
                self.image.set_data(image)
        xy = np.nan_to_num(xy, nan=-1e4)  # off the panel
        for line, (p, c) in zip(self.lines2, self.joint_set.bones, strict=True):
            line.set_data(xy[[p, c], 0], xy[[p, c], 1])
        self.filled.set_offsets(xy[interpolated])
        self.detected.set_offsets(xy[~interpolated])
        self._skeleton3d(self.lines3, xyz)
        if self.truth3:
            self._skeleton3d(self.truth3, truth)
        self.text.set_text(label)


def render_lift(
    stem: str | Path,
    pose2d: np.ndarray,
    interpolated: np.ndarray,
    pose3d: np.ndarray,
    joint_set: JointSet,
    image_size: tuple[float, float],
    fps: float,
    truth: np.ndarray | None = None,
    video: str | Path | None = None,
) -> list[Path]:
    """Animate a lift, one animation frame per input frame at ``fps``, into ``STEM.mp4`` (``STEM.gif`` without an
    ffmpeg encoder), with a progress bar, and write its middle frame with a 3D pose as ``STEM.png``.

    Args:
        pose2d: (T, J, 2) pixels, NaN where there is no input. interpolated: (T, J) bool, joints filled in.
        pose3d: (T, J, 3) metres, camera coordinates, root-relative; NaN rows where there is no lift.
        joint_set: the joints of all three arrays. image_size: (width, height) pixels.
        truth: optional (T, J, 3) ground truth in the units and frame of ``pose3d``, drawn dashed.
        video: optional video whose frames (in order, the last one held) are drawn under the 2D.

    Returns:
        [the animation, the still].

    Raises:
        OSError: as :func:`video_frames`.
    """
    stem = Path(stem)
    frames = video_frames(video) if video else None
    image = next(frames, None) if frames else None
    fig = _Figure(joint_set, image_size, truth is not None)
    total = len(pose2d)

    def update(t: int) -> list:
        nonlocal image
        if frames is not None and t > 0:
            image = next(frames, image)
        xyz = pose3d[t] if np.isfinite(pose3d[t]).all() else None
        fig.draw(pose2d[t], interpolated[t], xyz, None if truth is None else truth[t], f"frame {t} / {total}", image)
        return []

    ffmpeg = ffmpeg_path()
    if ffmpeg:
        matplotlib.rcParams["animation.ffmpeg_path"] = ffmpeg
        path, writer = stem.with_suffix(".mp4"), animation.FFMpegWriter(fps=fps, codec="h264")
    else:
        path, writer = stem.with_suffix(".gif"), animation.PillowWriter(fps=fps)
    anim = animation.FuncAnimation(fig.fig, update, frames=total, blit=False, repeat=False)
    # the encoders choose the container by the file's extension, so the atomic write is a named file in a
    # private temporary folder beside the target, then a rename
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.tmp-") as tmp:
        with tqdm(total=total, desc=f"render {path.name}", unit="frame") as bar:
            anim.save(str(Path(tmp) / path.name), writer=writer, progress_callback=lambda i, n: bar.update(1))
        os.replace(Path(tmp) / path.name, path)
    lifted = np.flatnonzero(np.isfinite(pose3d).all(axis=(1, 2)))
    if len(lifted):
        t = int(lifted[len(lifted) // 2])
        fig.draw(pose2d[t], interpolated[t], pose3d[t], None if truth is None else truth[t], f"frame {t} / {total}")
    still = stem.with_suffix(".png")
    with atomic_path(still) as tmp:
        fig.fig.savefig(tmp, format="png")
    plt.close(fig.fig)
    return [path, still]


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
