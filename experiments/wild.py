"""``python -m experiments.wild DATA --checkpoint LIFTER --out OUT``: lifting in the wild, checked against truth
(what ``make wild`` runs).

One real Human3.6M take (default S11 "Walking 1", camera 54138969, the first 10 s) is read from ``DATA/h36m``,
its 3D projected through the real camera (the 2D the store holds), and the 2D written in each detector layout
that :func:`ingest.keypoints.read_keypoints` reads (:mod:`experiments.detector_files`: COCO results, mmpose
annotations and results, mmpose
predictions, AlphaPose COCO-17 and Halpe-26, OpenPose BODY_25 and COCO-18 folders, a VideoPose3D custom npz,
and a plain Human3.6M-17 ``.npy``, the network's own input). Each is lifted back by the user's command,
``python -m finetune.infer``, and its MPJPE and P-MPJPE (mm, root-relative, the lifter's joints) against the
take's 3D are printed as a table and written to ``OUT/wild.json``. The detector layouts differ from the
``.npy`` row only where their joint sets lack a Human3.6M joint and derive it (pelvis, spine, thorax, head as
midpoints: :mod:`ingest.detector_joints`). S9 is never read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments import detector_files
from finetune import infer
from finetune.checkpoint import load_lifter
from finetune.metrics import mpjpe, p_mpjpe
from finetune.render import render_lift
from ingest.atomic import atomic_path
from ingest.cli import user_errors
from ingest.h36m import H36MReader
from ingest.store import Sequence
from shards import codec

PROG = "python -m experiments.wild"


def read_take(data: Path, subject: str, action: str, camera: str, seconds: float) -> Sequence:
    """One camera's sequence of a Human3.6M take from the data root, cut to its first ``seconds``.

    Raises:
        FileNotFoundError: no such take. KeyError: no such camera.
    """
    if subject == "S9":
        raise ValueError("S9 is held out: use S11 (or a training subject)")
    reader = H36MReader(subjects=(subject,))
    root = data / "h36m"
    sources = [p for p in reader.sources(root) if p.stem.replace("_", " ") == action]
    if not sources:
        raise FileNotFoundError(f"{root}/{subject}: no take {action!r}")
    seqs = {str(s.meta["camera"]): s for s in reader.read(sources[0])}
    if camera not in seqs:
        raise KeyError(f"{sources[0]}: no camera {camera!r}; it has {sorted(seqs)}")
    seq = seqs[camera]
    n = min(len(seq.pose3d), int(seconds * seq.meta.get("fps", 50)))
    return Sequence(seq.meta, seq.pose3d[:n], seq.pose2d[:n], {k: v[:n] for k, v in seq.frames.items()})


def write_inputs(folder: Path, pose2d: np.ndarray, image_size: tuple[float, float]) -> dict[str, tuple[Path, list]]:
    """Every detector layout of ``pose2d`` (T, 17, 3) pixels + confidence: {name: (path, extra infer flags)}."""
    folder.mkdir(parents=True, exist_ok=True)
    size = ["--image-size", *map(str, image_size)]
    files = {
        "coco-annotations": (folder / "coco_annotations.json", []),
        "coco-results": (folder / "coco_results.json", size),
        "mmpose": (folder / "mmpose_predictions.json", size),
        "alphapose-coco17": (folder / "alphapose_coco17.json", size),
        "alphapose-halpe26": (folder / "alphapose_halpe26.json", size),
        "openpose-body25": (folder / "openpose_body25", size),
        "openpose-coco18": (folder / "openpose_coco18", size),
        "videopose3d": (folder / "videopose3d_custom.npz", []),
        "npy-h36m17": (folder / "h36m17.npy", [*size, "--joints", "h36m17"]),
    }
    detector_files.write_coco(files["coco-annotations"][0], pose2d, image_size)
    detector_files.write_coco(files["coco-results"][0], pose2d, image_size, results=True)
    detector_files.write_mmpose(files["mmpose"][0], pose2d)
    detector_files.write_alphapose(files["alphapose-coco17"][0], pose2d, halpe=False)
    detector_files.write_alphapose(files["alphapose-halpe26"][0], pose2d, halpe=True)
    detector_files.write_openpose(files["openpose-body25"][0], pose2d, body25=True)
    detector_files.write_openpose(files["openpose-coco18"][0], pose2d, body25=False)
    detector_files.write_videopose3d(files["videopose3d"][0], pose2d, image_size)
    detector_files.write_array(files["npy-h36m17"][0], pose2d)
    return files


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="data root holding h36m/ (S11 by default)")
    p.add_argument("--checkpoint", required=True, help="a finetuned lifter (lifter.pt or its folder)")
    p.add_argument("--out", type=Path, default=Path("runs/wild"), help="output folder")
    p.add_argument("--subject", default="S11")
    p.add_argument("--action", default="Walking 1", help="take name as in MyPoses (e.g. 'Walking 1')")
    p.add_argument("--camera", default="54138969")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the clip (from the take's start)")
    p.add_argument(
        "--render", action="store_true", help="also render the COCO lift beside the truth (mp4 or gif, and a png)"
    )
    args = p.parse_args(argv)
    with user_errors(PROG):
        seq = read_take(args.data, args.subject, args.action, args.camera, args.seconds)
        lifter, _ = load_lifter(args.checkpoint)
    image_size = (float(seq.meta["width"]), float(seq.meta["height"]))
    truth, _ = codec.sequence_truth_3d(seq, lifter.joint_set)
    files = write_inputs(args.out / "inputs", seq.pose2d, image_size)
    rows = {}
    for name, (path, flags) in files.items():
        t0 = time.perf_counter()
        argv = [str(path), "--checkpoint", str(args.checkpoint), "--out", str(args.out / name), *flags]
        written = infer.main(argv)
        pred = np.load(next(iter(written.values())))
        lifted = time.perf_counter()
        if args.render and name == "coco-annotations":  # the lift beside the truth
            xy = codec.select_joints(seq.pose2d[..., :2], lifter.joint_set)
            no_gaps = np.zeros(xy.shape[:2], bool)
            stem = args.out / name / "0"
            render_lift(stem, xy, no_gaps, pred, lifter.joint_set, image_size, 50.0, truth=truth)
        rows[name] = {
            "mpjpe": mpjpe(pred * 1000, truth * 1000),
            "p_mpjpe": p_mpjpe(pred * 1000, truth * 1000),
            "seconds": round(lifted - t0, 1),
        }
        if args.render and name == "coco-annotations":
            rows[name]["render_seconds"] = round(time.perf_counter() - lifted, 1)
    take = f"{args.subject} {args.action}, camera {args.camera}, {len(truth)} frames"
    print(f"\nlifted back from each detector layout ({take}):")
    print(f"{'input layout':<20} {'MPJPE (mm)':>10} {'P-MPJPE (mm)':>12} {'wall (s)':>9}")
    for name, r in rows.items():
        print(f"{name:<20} {r['mpjpe']:>10.1f} {r['p_mpjpe']:>12.1f} {r['seconds']:>9.1f}")
    if "render_seconds" in rows.get("coco-annotations", {}):
        print(f"rendering {len(truth)} frames beside the truth: {rows['coco-annotations']['render_seconds']} s")
    result = {"take": take, "checkpoint": str(args.checkpoint), "rows": rows}
    with atomic_path(args.out / "wild.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
