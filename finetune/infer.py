"""``python -m finetune.infer KEYPOINTS --checkpoint lifter.pt --out DIR``: lift a detector's 2D keypoints to
metric 3D (lifting in the wild).

KEYPOINTS is what a 2D detector wrote (:func:`ingest.keypoints.read_keypoints` detects the layout: COCO
results or annotations, mmpose predictions, AlphaPose, an OpenPose per-frame JSON folder, a VideoPose3D
custom npz, a plain ``.npy`` / ``.npz`` array with ``--joints``). Each person (a track where the file has
track ids, else the highest-scoring detection of each frame, person ``0``) is lifted on its own:

1. its joints are mapped to Human3.6M-17 (:func:`ingest.detector_joints.to_h36m17_derived`: derived joints
   such as the pelvis and thorax are midpoints, with the lower confidence of their sources);
2. gaps are filled (:func:`fill_gaps`): a joint below ``--min-confidence`` or missing in a frame is linearly
   interpolated in time from the frames where it was detected (held at the ends), and marked as
   interpolated; the person's absence for more than ``--max-gap`` frames splits the track into segments
   lifted separately, and the frames of such a gap get no 3D (NaN);
3. each segment is resampled to the model's 50 fps (:data:`ingest.conventions.STORE_FPS`; linear
   interpolation in time, as the training data were), normalised exactly as the training 2D
   (:func:`shards.codec.normalize_2d`: ``x / w * 2 - [1, h / w]``, with the image size of the file or
   ``--image-size``), lifted by the lifter's own evaluation protocol (centre frame: every frame from the
   window centred on it, edges padded, :func:`finetune.windows.predict_sequence`; a sequence-to-sequence
   backbone such as DSTformer: consecutive clips, :func:`finetune.windows.predict_clips`; ``--flip``
   averaging; a lifter that reads a confidence channel gets the detector's, 0 on filled joints), and
   resampled back to the input frames.

Output, per person, in DIR: ``<person>.npy`` (T, J, 3) float32, the model's joints (Human3.6M-17 or -16),
**metres, camera coordinates (x right, y down, z forward), root-relative** (pelvis at the origin), one row per
input frame, NaN rows for frames without a lift; ``<person>.json``: units, frame, joint names, fps, the
source file and its detected format, which frames were lifted and which joints interpolated, and the 3D as
lists (null where not lifted). With ``--intrinsics FX FY CX CY`` (pixels) the pelvis is also placed in the
camera frame (:func:`place_root`, ``root`` in the JSON). ``--render`` draws the 2D input (over the frames
of ``--video-file`` when given) beside the 3D result (:func:`finetune.render.render_lift`): ``<person>.mp4``
where imageio-ffmpeg is installed, else ``.gif``, and a still ``<person>.png``.

A lifter trained with MPM's refine stage is used without its refine head (said on stderr): the head
back-projects the 2D at the ground-truth pelvis depth (:mod:`finetune.refine`), which a video does not give.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import load_lifter, require_metres
from finetune.model import Lifter
from finetune.render import render_lift
from finetune.windows import predict_clips, predict_sequence
from ingest.atomic import atomic_path
from ingest.cli import user_errors
from ingest.conventions import STORE_FPS
from ingest.detector_joints import COCO_THORAX, DETECTOR_JOINT_SETS, to_h36m17_derived
from ingest.keypoints import KeypointFile, read_keypoints, tracks
from ingest.skeleton import H36M17, JointSet
from shards import codec

PROG = "python -m finetune.infer"
MIN_CONFIDENCE = 0.3  # below it a detected joint is treated as missing (mmpose's and AlphaPose's usual cut)
MAX_GAP = 10  # frames of absence still interpolated across (0.2-0.4 s at 25-50 fps)


@dataclass
class Filled:
    """A person's Human3.6M-17 2D track with its gaps filled (:func:`fill_gaps`).

    Attributes:
        pose2d: (T, 17, 2) float64 pixels, NaN in frames outside every segment.
        interpolated: (T, 17) bool, joints filled by interpolation (their confidence is taken as 0).
        segments: [(start, stop)] frame ranges lifted separately, ``stop`` exclusive, in order.
    """

    pose2d: np.ndarray
    interpolated: np.ndarray
    segments: list[tuple[int, int]]


def _interp(t_out: np.ndarray, t_in: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n, ...) samples at times ``t_in`` (increasing) -> (len(t_out), ...) by linear interpolation in time,
    held at the first / last value outside ``t_in`` (``np.interp`` per channel)."""
    flat = values.reshape(len(values), -1)
    cols = [np.interp(t_out, t_in, flat[:, c]) for c in range(flat.shape[1])]
    return np.stack(cols, axis=-1).reshape(len(t_out), *values.shape[1:])


def fill_gaps(track: np.ndarray, min_confidence: float = MIN_CONFIDENCE, max_gap: int = MAX_GAP) -> Filled:
    """Fill one person's missing frames and low-confidence joints (module docstring, step 2).

    Args:
        track: (T, 17, 3) Human3.6M-17 x, y pixels and confidence; a frame where the person is absent is all
            NaN, and a frame where no joint reaches ``min_confidence`` counts as absent too.
        min_confidence: joints below it are missing. max_gap: the longest absence (frames) interpolated across.

    Returns:
        :class:`Filled`.

    Raises:
        ValueError: the person is never present, or a joint is missing in every frame of a segment (named).
    """
    conf = np.where(np.isfinite(track[..., :2]).all(-1), np.nan_to_num(track[..., 2], nan=0.0), 0.0)
    detected = conf >= min_confidence  # (T, J)
    present = np.flatnonzero(detected.any(axis=1))
    if not len(present):
        raise ValueError(f"no frame has a joint with confidence >= {min_confidence}")
    breaks = np.flatnonzero(np.diff(present) > max_gap + 1)
    starts = np.concatenate([[present[0]], present[breaks + 1]])
    stops = np.concatenate([present[breaks], [present[-1]]]) + 1
    out = np.full((len(track), 17, 2), np.nan)
    for a, b in zip(starts, stops, strict=True):
        t = np.arange(a, b)
        for j, name in enumerate(H36M17.joints):
            ok = detected[a:b, j]
            if not ok.any():
                raise ValueError(
                    f"joint {name!r} never reaches confidence {min_confidence} in frames {a}..{b - 1}: "
                    "cannot fill it (lower --min-confidence?)"
                )
            out[a:b, j] = _interp(t, t[ok], track[a:b, j, :2][ok])
    segments = [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
    inside = np.zeros(len(track), bool)
    for a, b in segments:
        inside[a:b] = True
    return Filled(out, inside[:, None] & ~detected, segments)


def lift_segment(
    lifter: Lifter | BackboneLifter,
    pose2d: np.ndarray,
    image_size: tuple[float, float],
    fps: float,
    flip: bool = True,
    confidence: np.ndarray | None = None,
) -> np.ndarray:
    """Lift one gap-free segment (module docstring, step 3), by the lifter's own protocol: centre frame
    (:func:`finetune.windows.predict_sequence`) or sequence to sequence (``protocol == "seq2seq"``, DSTformer:
    :func:`finetune.windows.predict_clips`), as its evaluation does.

    Args:
        lifter: a finetuned lifter in evaluation mode (MPM's, or another backbone's).
        pose2d: (n, 17, 2) Human3.6M-17 pixels at ``fps`` frames per second, no NaN.
        image_size: (width, height) pixels. fps: the input's frame rate.
        flip: average with the mirrored input's prediction (the evaluation's test-time augmentation).
        confidence: (n, 17) in [0, 1], 0 for filled-in joints: the third input channel of a lifter that reads
            one (``in_features == 3``); default 1 everywhere. Ignored by lifters of x, y only.

    Returns:
        (n, J, 3) float64 metres, camera coordinates, root-relative, joints of ``lifter.joint_set``.
    """
    n = len(pose2d)
    t_in = np.arange(n) / fps
    t_model = np.arange(int(np.floor((n - 1) * STORE_FPS / fps + 1e-9)) + 1) / STORE_FPS  # resample_times' count
    x = codec.normalize_2d(_interp(t_model, t_in, pose2d), *image_size)
    if lifter.in_features == 3:
        conf = np.ones(pose2d.shape[:2]) if confidence is None else confidence
        x = np.concatenate([x, _interp(t_model, t_in, conf)[..., None]], axis=-1)
    x = codec.select_joints(x, lifter.joint_set).astype(np.float32)
    if lifter.protocol == "seq2seq":
        pred = predict_clips(lifter.predict_clip, x, lifter.frames, lifter.joint_set, flip=flip)
    else:
        pred = predict_sequence(lifter, x, lifter.frames, lifter.joint_set, flip=flip)
    pred = pred.astype(np.float64)
    pred[:, 0] = 0.0  # the root joint's output is the origin by definition (as the evaluation sets it)
    return _interp(t_in, t_model, pred)


def place_root(pose3d: np.ndarray, pose2d: np.ndarray, weights: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """The camera-frame position of the root that best explains the 2D under a pinhole camera.

    For each frame, the translation ``t`` minimising the algebraic reprojection error of ``pose3d + t``: with
    ``u = (x - cx) / fx`` and ``v = (y - cy) / fy``, a pinhole projection gives ``X + tx = u (Z + tz)`` and
    ``Y + ty = v (Z + tz)``, two equations per joint linear in ``t`` (the translation-only case of the
    direct linear transform, Hartley & Zisserman, "Multiple View Geometry", 2nd ed., section 7.1), solved by
    weighted least squares. Lens distortion is ignored.

    Args:
        pose3d: (T, J, 3) root-relative metres, camera axes. pose2d: (T, J, 2) pixels.
        weights: (T, J) per-joint weights (e.g. 1 for detected joints, 0 for interpolated ones).
        intrinsics: (fx, fy, cx, cy) pixels.

    Returns:
        (T, 3) root position in metres, camera coordinates (NaN where a frame has fewer than 2 weighted joints).
    """
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    u, v = (pose2d[..., 0] - cx) / fx, (pose2d[..., 1] - cy) / fy
    X, Y, Z = np.moveaxis(pose3d, -1, 0)
    zeros, ones = np.zeros_like(u), np.ones_like(u)
    a = np.concatenate([np.stack([ones, zeros, -u], -1), np.stack([zeros, ones, -v], -1)], axis=1)  # (T, 2J, 3)
    b = np.concatenate([u * Z - X, v * Z - Y], axis=1)  # (T, 2J)
    w = np.concatenate([weights, weights], axis=1)
    ata = np.einsum("tki,tk,tkj->tij", a, w, a)
    atb = np.einsum("tki,tk,tk->ti", a, w, b)
    ok = (weights > 0).sum(axis=1) >= 2
    out = np.full((len(pose3d), 3), np.nan)
    out[ok] = np.linalg.solve(ata[ok], atb[ok][..., None])[..., 0]
    return out


@dataclass
class Lifted:
    """One person's result (:func:`lift_person`).

    Attributes:
        pose3d: (T, J, 3) metres, camera coordinates, root-relative, NaN rows where not lifted.
        lifted: (T,) bool frames with a 3D pose.
        filled: the 2D input after gap filling (:class:`Filled`).
        root: (T, 3) metres, the pelvis in the camera frame (:func:`place_root`), or None without intrinsics.
    """

    pose3d: np.ndarray
    lifted: np.ndarray
    filled: Filled
    root: np.ndarray | None = None


def lift_person(
    lifter: Lifter | BackboneLifter,
    track: np.ndarray,
    image_size: tuple[float, float],
    fps: float,
    flip: bool = True,
    min_confidence: float = MIN_CONFIDENCE,
    max_gap: int = MAX_GAP,
    intrinsics: np.ndarray | None = None,
) -> Lifted:
    """Steps 2-3 of the module docstring for one person's (T, 17, 3) Human3.6M-17 track (pixels, confidence).
    Raises ValueError as :func:`fill_gaps`."""
    filled = fill_gaps(track, min_confidence, max_gap)
    joints = len(lifter.joint_set)
    pose3d = np.full((len(track), joints, 3), np.nan)
    confidence = np.where(filled.interpolated, 0.0, np.clip(np.nan_to_num(track[..., 2]), 0.0, 1.0))
    for a, b in filled.segments:
        pose3d[a:b] = lift_segment(lifter, filled.pose2d[a:b], image_size, fps, flip, confidence[a:b])
    lifted = np.isfinite(pose3d).all(axis=(1, 2))
    root = None
    if intrinsics is not None:
        weights = codec.select_joints((~filled.interpolated).astype(np.float64)[..., None], lifter.joint_set)[..., 0]
        xy = codec.select_joints(np.nan_to_num(filled.pose2d), lifter.joint_set)
        root = place_root(np.nan_to_num(pose3d), xy, weights, intrinsics)
        root[~lifted] = np.nan
    return Lifted(pose3d, lifted, filled, root)


def _rounded(x: np.ndarray, lifted: np.ndarray) -> list:
    """Rows of ``x`` as lists rounded to 0.1 mm, None for frames without a lift."""
    return [np.round(row, 4).tolist() if ok else None for row, ok in zip(x, lifted, strict=True)]


def write_person(out: Path, person: str, result: Lifted, joint_set: JointSet, kf: KeypointFile, info: dict) -> Path:
    """Write ``OUT/<person>.npy`` and ``OUT/<person>.json`` atomically (module docstring); returns the npy."""
    npy = out / f"{person}.npy"
    with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, result.pose3d.astype(np.float32))
    doc = {
        "units": "metres",
        "frame": "camera coordinates (x right, y down, z forward), root-relative (pelvis at the origin)",
        "joints": list(joint_set.joints),
        "fps": info["fps"],
        "source": str(kf.path),
        "format": kf.format,
        "input_joint_set": kf.joint_set,
        "person": person,
        "frames": len(result.pose3d),
        "frame_names": kf.frame_names,
        "lifted": result.lifted.tolist(),
        "segments": result.filled.segments,
        "interpolated": {
            name: np.flatnonzero(result.filled.interpolated[:, j]).tolist() for j, name in enumerate(H36M17.joints)
        },
        **{k: v for k, v in info.items() if k != "fps"},
        "pose3d": _rounded(result.pose3d, result.lifted),
    }
    if result.root is not None:
        doc["root"] = _rounded(result.root, result.lifted)
    with atomic_path(out / f"{person}.json") as tmp:
        Path(tmp).write_text(json.dumps(doc))
    return npy


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("keypoints", help="a detector's 2D keypoints: a JSON file, an OpenPose folder, an npz or npy")
    p.add_argument("--checkpoint", required=True, help="a finetuned lifter (lifter.pt or the folder holding it)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--person", action="append", help="lift only this person / track id (repeatable; default all)")
    p.add_argument("--fps", type=float, help="the input's frame rate (default: the file's, else 50)")
    p.add_argument("--image-size", type=float, nargs=2, metavar=("W", "H"), help="pixels (default: the file's)")
    p.add_argument(
        "--joints", choices=sorted(DETECTOR_JOINT_SETS), help="joint set of a plain npy / npz array (required there)"
    )
    p.add_argument("--video", help="which video of a VideoPose3D npz holding several")
    p.add_argument(
        "--coco-thorax",
        choices=COCO_THORAX,
        default="h36m",
        help="COCO-17 input's thorax: the shoulder midpoint raised to Human3.6M's (default) or mmpose's midpoint",
    )
    p.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE, help="joints below it are filled in")
    p.add_argument("--max-gap", type=int, default=MAX_GAP, help="longest absence (frames) interpolated across")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no flip test-time augmentation")
    p.add_argument(
        "--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="pixels: also place the root"
    )
    p.add_argument("--render", action="store_true", help="draw the 2D input beside the 3D result (mp4, else gif)")
    p.add_argument("--video-file", help="with --render: the video the keypoints came from, drawn under the 2D")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    return p


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Run the command; returns {person: npy path}."""
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with user_errors(PROG):
        kf = read_keypoints(args.keypoints, joint_set=args.joints, video=args.video)
        image_size = tuple(args.image_size) if args.image_size else kf.image_size
        if image_size is None:
            raise ValueError(f"{kf.path}: the file does not give the image size: pass --image-size W H")
        fps = args.fps or kf.fps or STORE_FPS
        lifter, meta = load_lifter(args.checkpoint)
        require_metres(meta, args.checkpoint)
        if lifter.refiner is not None:
            print(
                f"{args.checkpoint}: its refine head needs the true pelvis depth; lifting without it",
                file=sys.stderr,
            )
        people = tracks(kf)
        wanted = args.person or sorted(people)
        unknown = sorted(set(wanted) - set(people))
        if unknown:
            raise KeyError(f"{kf.path}: no person {unknown}; the file has {sorted(people)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "fps": fps,
        "image_size": list(image_size),
        "checkpoint": str(args.checkpoint),
        "flip": args.flip,
        "min_confidence": args.min_confidence,
        "max_gap": args.max_gap,
    }
    if kf.joint_set == "coco17":
        info["coco_thorax"] = args.coco_thorax
    written = {}
    for person in wanted:
        with user_errors(PROG):
            try:
                track = to_h36m17_derived(people[person], kf.joint_set, args.coco_thorax)
                result = lift_person(
                    lifter, track, image_size, fps, args.flip, args.min_confidence, args.max_gap, args.intrinsics
                )
            except ValueError as exc:
                raise ValueError(f"{kf.path}: person {person}: {exc}") from None
        written[person] = write_person(out, person, result, lifter.joint_set, kf, info)
        line = f"person {person}: {int(result.lifted.sum())} of {len(track)} frames lifted -> {written[person]}"
        if args.render:
            with user_errors(PROG):  # a video that cannot be read
                pictures = render_lift(
                    out / person,
                    codec.select_joints(result.filled.pose2d, lifter.joint_set),
                    codec.select_joints(result.filled.interpolated[..., None], lifter.joint_set)[..., 0],
                    result.pose3d,
                    lifter.joint_set,
                    image_size,
                    fps,
                    video=args.video_file,
                )
            line += ", " + " and ".join(p.name for p in pictures)
        print(line)
    return written


if __name__ == "__main__":
    main()
