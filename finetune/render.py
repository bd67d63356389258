"""Pictures of a lift: the 2D input beside the 3D result, as an animation and a still, and the per-action chart
of an evaluation (matplotlib).

The 2D panel is the image frame (pixels, y down; over the video's frames when one is given), joints filled by
interpolation drawn hollow; the 3D panel is the camera frame turned upright for viewing: x to the right,
camera depth z into the page, -y up, in metres around the pelvis, with the ground truth dashed in grey where
it is known. Left limbs are blue, right limbs red.

Animations are drawn by blitting (matplotlib's "faster rendering by using blitting" recipe): the axes, ticks
and labels are drawn once, and each frame restores them and draws only the skeletons, so a frame costs a few
milliseconds rather than a whole figure. The frames go as raw RGB to MP4 through ``imageio_ffmpeg.write_frames``
where the ``imageio-ffmpeg`` package is installed (``pip install posemill[video]``; its own ffmpeg binary, or
``IMAGEIO_FFMPEG_EXE``), else to a GIF through Pillow (a matplotlib dependency). Reading a video needs
imageio-ffmpeg too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ingest.atomic import atomic_path  # noqa: E402
from ingest.skeleton import JointSet  # noqa: E402

LEFT, RIGHT, CENTRE, TRUTH = "tab:blue", "tab:red", "0.2", "0.6"


def ffmpeg_path() -> str | None:
    """The ffmpeg binary imageio-ffmpeg writes MP4 with, or None (not installed, or no binary found)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


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
        self.background = None

    def _moving(self) -> list:
        """The artists that change from frame to frame, in drawing order (the video frame first)."""
        image = [self.image] if self.image is not None else []
        return [*image, *self.lines2, self.filled, self.detected, self.text, *self.truth3, *self.lines3]

    def frame(self) -> np.ndarray:
        """The figure as (H, W, 3) uint8 RGB, drawn by blitting: the static parts are drawn once (the first
        call) and restored, then only :meth:`_moving` is drawn."""
        canvas = self.fig.canvas
        if self.background is None:
            for artist in self._moving():
                artist.set_animated(True)  # left out of the full draw
            canvas.draw()
            self.background = canvas.copy_from_bbox(self.fig.bbox)
        canvas.restore_region(self.background)
        for artist in self._moving():
            artist.axes.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3]

    def save_still(self, path: Path) -> None:
        """The whole figure as drawn now, as a PNG written atomically."""
        for artist in self._moving():
            artist.set_animated(False)
        with atomic_path(path) as tmp:
            self.fig.savefig(tmp, format="png")

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
    """Animate a lift, one animation frame per input frame at ``fps``, into ``STEM.mp4`` (``STEM.gif`` without
    imageio-ffmpeg), drawn by blitting (module docstring), with a progress bar, and write its middle frame with
    a 3D pose as ``STEM.png``.

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

    def draw(t: int, image: np.ndarray | None) -> None:
        xyz = pose3d[t] if np.isfinite(pose3d[t]).all() else None
        fig.draw(pose2d[t], interpolated[t], xyz, None if truth is None else truth[t], f"frame {t} / {total}", image)

    path = stem.with_suffix(".mp4" if ffmpeg_path() else ".gif")
    # the encoders choose the container by the file's extension, so the atomic write is a named file in a
    # private temporary folder beside the target, then a rename
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.tmp-") as tmp:
        sink = _sink(Path(tmp) / path.name, fig.fig.canvas.get_width_height(), fps)
        next(sink)
        try:
            for t in tqdm(range(total), desc=f"render {path.name}", unit="frame"):
                if frames is not None and t > 0:
                    image = next(frames, image)
                draw(t, image)
                sink.send(fig.frame())
        finally:
            sink.close()
        os.replace(Path(tmp) / path.name, path)
    lifted = np.flatnonzero(np.isfinite(pose3d).all(axis=(1, 2)))
    if len(lifted):
        draw(int(lifted[len(lifted) // 2]), None)
    still = stem.with_suffix(".png")
    fig.save_still(still)
    plt.close(fig.fig)
    return [path, still]


def _sink(path: Path, size: tuple[int, int], fps: float):
    """A generator that takes (H, W, 3) uint8 frames (``send``) and, when closed, has written them to ``path``:
    MP4 (H.264) through ``imageio_ffmpeg.write_frames``, or a GIF through Pillow (``.gif``). Prime it with
    ``next``."""
    if path.suffix == ".mp4":
        import imageio_ffmpeg

        # macro_block_size 2: H.264 in yuv420p needs even sizes; imageio_ffmpeg resizes up to them
        writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec="libx264", macro_block_size=2)
        writer.send(None)
        try:
            while True:
                writer.send(np.ascontiguousarray((yield)))
        finally:
            writer.close()
    else:
        images = []
        try:
            while True:
                images.append(Image.fromarray(np.array((yield))).quantize(method=Image.Quantize.FASTOCTREE))
        finally:
            if images:
                images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


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
