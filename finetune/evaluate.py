"""Evaluation protocols for 2D-to-3D lifting: Human3.6M and MPI-INF-3DHP, from the motion store.

Human3.6M (VideoPose3D ``run.py`` / MPM ``trainer.py`` practice): every frame of every full test sequence
(split ``test``, all cameras) is predicted from the window centred on it (:mod:`finetune.windows`), poses
root-relative (pelvis, joint 0, at the origin; the prediction's root is set to 0 as in MPM). A lifter with
MPM's refine head (:mod:`finetune.refine`) is scored on its refined predictions, the unrefined ones beside
them (``unrefined``). Errors in mm:
Protocol #1 MPJPE, Protocol #2 P-MPJPE, N-MPJPE, MPJVE (:mod:`finetune.metrics`), averaged over the frames
of each action (sub-takes merged) and then over the 15 actions; the same per subject.

MPI-INF-3DHP (MPI-INF-3DHP toolkit ``mpii_evaluate_errors.m``; P-STMO ``common/generator_3dhp.py`` windows
over whole sequences, scored on valid frames only): PCK at 150 mm and AUC over 0..150 mm on the toolkit's
14 joints, MPJPE on all joints, per sequence, per activity (frame key ``activity``, 1..7) and overall.

``python -m finetune.evaluate CKPT --store STORE`` writes ``results.json`` and prints the per-action table
in the layout of the papers' tables.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from finetune.backbone_lifter import BackboneLifter
from finetune.checkpoint import load_lifter, require_metres
from finetune.completion import OCCLUSIONS, evaluate_completion, lifter_completer, mpm_completer
from finetune.metrics import (
    MPI_INF_3DHP_PCK_JOINTS,
    auc,
    joint_errors,
    mpjve,
    n_mpjpe,
    p_mpjpe,
    pck,
)
from finetune.model import decoder_centre, per_frame_features, temporal_features
from finetune.refine import RefineHead, refine_sequence
from finetune.render import plot_action_mpjpe, render_lift
from finetune.windows import PROTOCOLS, CentrePredictor, ClipPredictor, predict_clips, predict_sequence
from ingest.atomic import write_json
from ingest.cli import user_errors
from ingest.h36m import H36M_ABBREV, H36M_ACTIONS, canonical_action
from ingest.skeleton import H36M17, H36M17_TO_16, JointSet
from ingest.store import DatasetView, MotionStore, Sequence
from pretrain.export import load_pretrained
from shards import codec
from shards.codec import encode_2d, frame_mask, select_joints, sequence_input_2d, sequence_truth_3d
from shards.stream import LoaderOptions, make_loader
from training import settings

H36M_METRICS = (
    ("mpjpe", "Protocol #1 MPJPE"),
    ("p_mpjpe", "Protocol #2 P-MPJPE"),
    ("n_mpjpe", "N-MPJPE"),
    ("mpjve", "MPJVE"),
)
# mpii_get_activity_name.m
MPI_INF_3DHP_ACTIVITIES = {
    1: "Standing/Walking",
    2: "Exercising",
    3: "Sitting",
    4: "Reaching/Crouching",
    5: "On The Floor",
    6: "Sports",
    7: "Miscellaneous",
}


def store_input_2d(seq: Sequence, joint_set: JointSet, channels: int = 2) -> np.ndarray:
    """The lifter's input of a whole store sequence, (N, J, ``channels``) float32: normalised x, y
    (:func:`shards.codec.sequence_input_2d`, equal to the training windows) and, with ``channels=3``, the
    confidence as the training windows carry it (zero on invalid frames; DSTformer reads it)."""
    if channels == 2:
        return sequence_input_2d(seq, joint_set)
    if channels != 3:
        raise ValueError(f"a lifter reads 2 (x, y) or 3 (x, y, confidence) input channels, not {channels}")
    pose2d, _ = encode_2d(seq.pose2d, float(seq.meta["width"]), float(seq.meta["height"]), frame_mask(seq))
    return select_joints(pose2d[..., :3], joint_set).astype(np.float32)


def predict_store_sequence(
    predict: CentrePredictor | ClipPredictor,
    seq: Sequence,
    frames: int,
    joint_set: JointSet,
    flip: bool = False,
    device: str = "cpu",
    protocol: str = "centre",
    channels: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Root-relative prediction and ground truth of one store sequence, in millimetres.

    Args:
        predict: a :class:`finetune.windows.CentrePredictor` (``protocol="centre"``: a lifter in evaluation
            mode, or :class:`finetune.windows.PerWindow` of a window function) or a
            :data:`finetune.windows.ClipPredictor` (``"seq2seq"``: e.g. a lifter's ``predict_clip``).
        channels: the input channels it reads (:func:`store_input_2d`; a lifter's ``in_features``).

    Returns:
        (pred (N, J, 3), truth (N, J, 3)), joints of ``joint_set``, camera coordinates, root at the origin.
    """
    pose2d = store_input_2d(seq, joint_set, channels)
    if protocol not in PROTOCOLS:
        raise ValueError(f"evaluation protocol must be one of {PROTOCOLS}, got {protocol!r}")
    run = predict_sequence if protocol == "centre" else predict_clips
    pred = run(predict, pose2d, frames, joint_set, flip=flip, device=device).astype(np.float64)
    pred[:, 0] = 0.0
    truth, _ = sequence_truth_3d(seq, joint_set)
    return pred * 1000.0, truth * 1000.0


def _frame_weighted(records: Iterable[dict], keys: Iterable[str]) -> dict:
    records = list(records)
    n = sum(r["frames"] for r in records)
    return {k: sum(r[k] * r["frames"] for r in records) / n for k in keys} | {"frames": n}


def _action_table(records: list[dict]) -> dict:
    """Per-action frame-weighted means and their unweighted mean over the actions present ("Avg")."""
    keys = [k for k, _ in H36M_METRICS]
    by_action: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_action[r["action"]].append(r)
    actions = {a: _frame_weighted(by_action[a], keys) for a in H36M_ACTIONS if a in by_action}
    average = {k: float(np.mean([v[k] for v in actions.values()])) for k in keys}
    return {"actions": actions, "average": average | {"frames": sum(v["frames"] for v in actions.values())}}


def evaluate_h36m(
    predict: CentrePredictor | ClipPredictor,
    view: DatasetView,
    frames: int,
    joint_set: JointSet = H36M17,
    flip: bool = False,
    subjects: Iterable[str] | None = None,
    cameras: Iterable[str] | None = None,
    device: str = "cpu",
    protocol: str = "centre",
    progress: bool = True,
    channels: int = 2,
    refiner: RefineHead | None = None,
) -> dict:
    """Human3.6M protocols on every test-split sequence of ``view`` (optionally only ``subjects`` and
    ``cameras``, camera ids as in the sequence metadata: a quicker, partial evaluation), every frame predicted
    by ``protocol`` (:data:`finetune.windows.PROTOCOLS`; ``predict`` to match, see
    :func:`predict_store_sequence`) from inputs of ``channels`` channels (:func:`store_input_2d`), with a
    progress bar over frames (frames/s, ETA) unless ``progress`` is False. With a ``refiner`` (MPM's refine
    head, in evaluation mode) every prediction is refined (:func:`finetune.refine.refine_sequence`) before it is
    scored.

    Returns:
        ``{"actions": {action: {metric: mm, "frames": n}}, "average": {...}, "subjects": {S: {"actions",
        "average"}}, "sequences": [...], "protocol"}`` with metrics ``mpjpe``, ``p_mpjpe``, ``n_mpjpe``,
        ``mpjve``; with a ``refiner`` these are the refined predictions', and ``"unrefined": {"actions",
        "average"}`` the same table of the lifter's own predictions.

    Raises:
        ValueError: no test sequence, or an unknown action.
    """
    wanted = None if subjects is None else set(subjects)
    cams = None if cameras is None else {str(c) for c in cameras}
    metas = [
        m
        for m in view.metas
        if m["split"] == "test"
        and (wanted is None or m["subject"] in wanted)
        and (cams is None or str(m["camera"]) in cams)
    ]
    if not metas:  # before any work
        raise ValueError(
            f"{view.store.url}/{view.name}: no test-split sequence"
            + (f" of subjects {sorted(wanted)}" if wanted else "")
            + (f" from cameras {sorted(cams)}" if cams else "")
        )
    counts = dict(zip(view.ids, view.frame_counts, strict=True))
    records, unrefined = [], []
    with tqdm(
        total=sum(counts[m["id"]] for m in metas),
        desc=f"evaluate {view.name} ({protocol})",
        unit="frame",
        disable=not progress,
    ) as bar:
        for meta in metas:
            action = canonical_action(meta)
            seq = view[meta["id"]]
            pred, truth = predict_store_sequence(predict, seq, frames, joint_set, flip, device, protocol, channels)
            keys = {"id": meta["id"], "subject": meta["subject"], "action": action, "camera": meta["camera"]}
            if refiner is not None:
                unrefined.append(keys | _h36m_errors(pred, truth))
                pred = refine_sequence(refiner, seq, pred, joint_set, device)
            records.append(keys | _h36m_errors(pred, truth))
            bar.update(len(truth))
    result = _action_table(records)
    if refiner is not None:
        result["unrefined"] = _action_table(unrefined)
    by_subject: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_subject[r["subject"]].append(r)
    result["subjects"] = {s: _action_table(rs) for s, rs in sorted(by_subject.items())}
    result["sequences"] = records
    result["protocol"] = protocol
    return result


def _h36m_errors(pred: np.ndarray, truth: np.ndarray) -> dict:
    """A sequence's frame count and its Human3.6M metrics (mm) of ``pred`` against ``truth`` (N, J, 3) mm."""
    return {
        "frames": len(truth),
        "mpjpe": float(joint_errors(pred, truth).mean()),
        "p_mpjpe": p_mpjpe(pred, truth),
        "n_mpjpe": n_mpjpe(pred, truth),
        "mpjve": mpjve(pred, truth) if len(truth) > 1 else 0.0,
    }


def _pck_auc_mpjpe(pred: np.ndarray, truth: np.ndarray, pck_joints: np.ndarray) -> dict:
    return {
        "pck": pck(pred, truth, joints=pck_joints),
        "auc": auc(pred, truth, joints=pck_joints),
        "mpjpe": float(joint_errors(pred, truth).mean()),
        "frames": len(truth),
    }


def evaluate_3dhp(
    predict: CentrePredictor | ClipPredictor,
    view: DatasetView,
    frames: int,
    joint_set: JointSet = H36M17,
    flip: bool = False,
    device: str = "cpu",
    protocol: str = "centre",
    progress: bool = True,
    channels: int = 2,
    refiner: RefineHead | None = None,
) -> dict:
    """MPI-INF-3DHP test protocol: valid frames of every test sequence (frame key ``valid``; all frames if
    absent), windows (or, ``protocol="seq2seq"``, clips) taken over the whole sequence, inputs of ``channels``
    channels (:func:`store_input_2d`); a progress bar over sequences unless ``progress`` is False; with a
    ``refiner``, predictions refined before scoring, as :func:`evaluate_h36m` does.

    Returns:
        ``{"sequences": {id: m}, "activities": {name: m}, "all": m}`` with m = ``{"pck", "auc"`` (percent,
        toolkit's 14 joints), ``"mpjpe"`` (mm, all joints), ``"frames"}``; with a ``refiner`` also
        ``"unrefined"``: ``all`` of the lifter's own predictions.
    """
    pck_joints = (
        MPI_INF_3DHP_PCK_JOINTS if joint_set is H36M17 else np.searchsorted(H36M17_TO_16, MPI_INF_3DHP_PCK_JOINTS)
    )
    preds, truths, activities, sequences, raw = [], [], [], {}, []
    metas = [m for m in view.metas if m["split"] == "test"]
    for meta in tqdm(metas, desc=f"evaluate {view.name} ({protocol})", unit="sequence", disable=not progress):
        seq = view[meta["id"]]
        pred, truth = predict_store_sequence(predict, seq, frames, joint_set, flip, device, protocol, channels)
        valid = np.asarray(seq.frames.get("valid", np.ones(len(seq), bool)), dtype=bool)
        if not valid.any():
            continue
        if refiner is not None:
            raw.append(pred[valid])
            pred = refine_sequence(refiner, seq, pred, joint_set, device)
        preds.append(pred[valid])
        truths.append(truth[valid])
        sequences[meta["id"]] = _pck_auc_mpjpe(pred[valid], truth[valid], pck_joints)
        if "activity" in seq.frames:
            activities.append(np.asarray(seq.frames["activity"])[valid])
    if not preds:
        raise ValueError(f"{view.store.url}/{view.name}: no valid frame in any test-split sequence")
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    result = {"sequences": sequences, "all": _pck_auc_mpjpe(pred, truth, pck_joints), "activities": {}}
    if refiner is not None:
        result["unrefined"] = _pck_auc_mpjpe(np.concatenate(raw), truth, pck_joints)
    if len(activities) == len(preds):
        act = np.concatenate(activities)
        for code, name in MPI_INF_3DHP_ACTIVITIES.items():
            if (act == code).any():
                result["activities"][name] = _pck_auc_mpjpe(pred[act == code], truth[act == code], pck_joints)
    return result


def format_h36m_table(result: dict, title: str = "") -> str:
    """The per-action table in the papers' layout: one block per metric, actions as columns, rows per
    subject and "All"."""
    width = max(7, *(len(a) + 1 for a in H36M_ABBREV))
    header = f"{'':<24}" + "".join(f"{a:>{width}}" for a in (*H36M_ABBREV, "Avg"))
    lines = [title] if title else []
    rows = [*result.get("subjects", {}).items()] + [("All", result)]
    for key, label in H36M_METRICS:
        lines.append(f"{label + ' (mm)':<24}" + header[24:])
        for name, block in rows:
            cells = [block["actions"].get(a, {}).get(key) for a in H36M_ACTIONS] + [block["average"][key]]
            lines.append(f"{name:<24}" + "".join(f"{'-' if c is None else f'{c:.1f}':>{width}}" for c in cells))
    return "\n".join(lines)


def format_3dhp_table(result: dict) -> str:
    """PCK / AUC / MPJPE rows per activity and overall."""
    lines = [f"{'MPI-INF-3DHP':<24}{'PCK':>8}{'AUC':>8}{'MPJPE':>8}{'frames':>9}"]
    for name, m in [*result["activities"].items(), ("All", result["all"])]:
        lines.append(f"{name:<24}{m['pck']:>8.1f}{m['auc']:>8.1f}{m['mpjpe']:>8.1f}{m['frames']:>9d}")
    return "\n".join(lines)


class PretrainedLift(torch.nn.Module):
    """The pretraining network as a lifter (:meth:`pretrain.model.MPM.lift`, no finetuning): a
    :class:`finetune.windows.CentrePredictor` (``frame_features`` (N, J, C >= 2) -> (N, C): the 2D encoder and
    the shared spatial MLP; ``centre_from_features`` (B, T, C) -> (B, J, 3) metres: the shared temporal
    transformer and the 3D decoder for the centre frame only; ``predict_centre`` (B, T, J, C) -> (B, J, 3),
    both stages on windows), ``predict_clip`` (B, T, J, C) -> (B, T, J, 3); ``frames`` and ``joint_set`` as a
    :class:`finetune.model.Lifter` has them, so every protocol of this module applies. Centre-frame
    prediction needs evaluation mode (it raises RuntimeError otherwise), which uses the batch-norm running
    statistics. Those that pretraining leaves average its masked-2D, masked-3D and complete-2D passes and
    misnormalise complete 2D (the S11 error about doubles); :func:`recalibrate_lift_batch_norm`
    re-estimates them on complete training 2D first."""

    def __init__(self, mpm: torch.nn.Module):
        super().__init__()
        self.mpm, self.frames = mpm, mpm.cfg.frames
        self.joint_set = codec.joint_set(mpm.cfg.joints)
        self.in_features, self.protocol = 2, "centre"

    def frame_features(self, pose2d: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("PretrainedLift.frame_features is centre-frame evaluation: call .eval() first")
        return per_frame_features(self.mpm.encoder_2d, self.mpm.shared, pose2d)

    def centre_from_features(self, features: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("PretrainedLift.centre_from_features is centre-frame evaluation: call .eval() first")
        return decoder_centre(self.mpm.decoder_3d, temporal_features(self.mpm.shared, features), self.mpm.dec_pos_emb)

    def predict_centre(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, T, J, C) -> (B, J, 3): the centre frame of :meth:`predict_clip`, computing only what it needs."""
        b, t, j, c = pose2d.shape
        return self.centre_from_features(self.frame_features(pose2d.reshape(b * t, j, c)).view(b, t, -1))

    def predict_clip(self, pose2d: torch.Tensor) -> torch.Tensor:
        """(B, T, J, C) -> (B, T, J, 3): every frame's lifted pose (sequence-to-sequence evaluation)."""
        return self.mpm.lift(pose2d[..., :2])


def recalibrate_lift_batch_norm(mpm: torch.nn.Module, batches: Iterable[dict], device: str = "cpu") -> int:
    """Re-estimate the batch-norm running statistics of the lift path (``encoder_2d``, ``shared``,
    ``decoder_3d``) of an :class:`~pretrain.model.MPM` on complete 2D windows: each statistic becomes the
    plain average over the given batches (``momentum=None``; "precise BN", Wu & Johnson, "Rethinking 'Batch'
    in BatchNorm", 2021), every weight and every other module unchanged, the model left in eval mode.

    Args:
        batches: streamed batches (``pose2d`` (B, T, J, C), ``valid2d`` (B, T) bool; frames without 2D
            enter as the 2D mask token, as in pretraining's lifting term), e.g. the first N of
            :func:`shards.stream.make_loader` over Human3.6M's train split.

    Returns:
        the number of batches used.

    Raises:
        ValueError: no batch (the statistics are then left as they were).
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("batch-norm re-estimation got no batch")
    norms = [
        m
        for part in (mpm.encoder_2d, mpm.shared, mpm.decoder_3d)
        for m in part.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    momenta = [m.momentum for m in norms]
    mpm.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    used = 0
    with torch.no_grad():
        for batch in itertools.chain([first], batches):
            x = batch["pose2d"][..., :2].float().to(device)
            hidden = ~batch["valid2d"].to(device)[..., None].expand(-1, -1, x.shape[2])
            mpm.lift(x, hidden)
            used += 1
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    mpm.eval()
    return used


def pretrained_lifter(
    path: str | Path, device: str = "cpu", bn_shards: str | None = None, bn_batches: int = 50
) -> PretrainedLift:
    """:class:`PretrainedLift` of a pretraining export or checkpoint folder
    (:func:`pretrain.export.load_pretrained`); with ``bn_shards`` (a shard folder) its lift path's
    batch-norm statistics re-estimated on ``bn_batches`` batches of 128 complete 2D windows of Human3.6M's
    train split (:func:`recalibrate_lift_batch_norm`)."""
    mpm = load_pretrained(path).to(device)
    if bn_shards:
        loader = make_loader(
            bn_shards,
            LoaderOptions(
                datasets=["h36m"],
                split="train",
                joints=mpm.cfg.joints,
                clip_len=mpm.cfg.frames,
                batch_size=128,
                resampled=False,
                shuffle_segments=1024,
            ),
        )
        recalibrate_lift_batch_norm(mpm, itertools.islice(loader, bn_batches), device)
    return PretrainedLift(mpm).eval()


EVAL_DATASETS = ("h36m", "mpi_inf_3dhp")  # the datasets with a test protocol


@dataclass
class EvalConfig:
    """Evaluation options, the same for ``python -m finetune.evaluate`` (flags of these names) and for the
    evaluation that finetuning runs at its end (its config's ``eval`` section). ``store``: the motion store;
    ``datasets``: h36m and / or mpi_inf_3dhp (default: those with test sequences in the store); ``protocol``:
    ``centre`` (every frame from the window centred on it, MPM / VideoPose3D) or ``seq2seq`` (every frame once
    from consecutive clips through the sequence head, MotionBERT), named in the tables; default the lifter's
    own (its ``protocol``: ``centre`` for MPM, VideoPose3D, SimpleBaseline3D and PoseFormer, ``seq2seq`` for
    DSTformer); horizontal ``flip``
    test-time augmentation; Human3.6M test ``subjects`` and ``cameras`` (default all; a partial run);
    ``completion``: also 2D-to-3D completion with occluded inputs (MPM table 4), scoring every
    ``completion_every``-th frame; ``pretrained``: a pretraining export or checkpoint for 3D-to-3D completion
    (MPM table 3) over ``completion_frames`` (default: the lifter's); ``device`` (default: cuda when
    available)."""

    store: str = ""
    datasets: list[str] | None = None
    protocol: str | None = None
    flip: bool = False
    subjects: list[str] | None = None
    cameras: list[str] | None = None
    completion: bool = False
    completion_every: int = 1
    pretrained: str | None = None
    completion_frames: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.datasets or ()) - set(EVAL_DATASETS))
        if unknown:
            raise ValueError(f"eval.datasets: {unknown} cannot be evaluated; known: {list(EVAL_DATASETS)}")
        if self.completion_every < 1:
            raise ValueError(f"eval.completion_every must be >= 1, got {self.completion_every}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ValueError(f"eval.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")


def check_store(cfg: EvalConfig) -> None:
    """Check, before any work, that ``cfg.store`` is set and holds a dataset to evaluate on (``cfg.datasets``,
    default :data:`EVAL_DATASETS`). Raises ValueError naming the store (finetuning calls this before it
    trains, so a missing store is not found after the training)."""
    if not cfg.store:
        raise ValueError("eval.store is not set: give the motion store (--store)")
    wanted = cfg.datasets or EVAL_DATASETS
    if not any(d in MotionStore.open(cfg.store) for d in wanted):
        raise ValueError(f"--store {cfg.store}: no {' or '.join(wanted)} dataset to evaluate on (python -m ingest ...)")


def evaluate_lifter(
    lifter: torch.nn.Module, cfg: EvalConfig, out: str | Path, meta: dict, checkpoint: str, title: str = ""
) -> dict:
    """Every protocol ``cfg`` asks for on a lifter (a :class:`finetune.model.Lifter`, a
    :class:`finetune.backbone_lifter.BackboneLifter` or :class:`PretrainedLift`), ``cfg.protocol`` or else the
    lifter's own; writes ``out/results.json``, prints the tables (naming the backbone and the protocol) and
    returns the results (``{"checkpoint", "store", "backbone", "frames", "joints", "flip", "protocol", "refine",
    "train": meta, "unit": "mm", "h36m", ["completion_2d", "completion_3d", "mpi_inf_3dhp"]}``). A lifter with a
    refine head (``refine`` true) is scored refined, its unrefined scores under each dataset's ``unrefined``
    (:func:`evaluate_h36m`); the completion protocols use the lifter alone.

    Raises:
        ValueError: no store, no dataset to evaluate, no test sequence (naming the store); a lifter whose outputs
            are not metres (:func:`finetune.checkpoint.require_metres`).
    """
    require_metres(meta, checkpoint)
    if not cfg.store:
        raise ValueError("eval.store is not set: give the motion store (--store)")
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    store = MotionStore.open(cfg.store)
    datasets = cfg.datasets or [
        d for d in EVAL_DATASETS if d in store and any(m["split"] == "test" for m in store[d].metas)
    ]
    if not datasets:
        raise ValueError(f"{cfg.store}: no h36m or mpi_inf_3dhp test sequence to evaluate on")
    protocol = cfg.protocol or lifter.protocol
    backbone = lifter.name if isinstance(lifter, BackboneLifter) else "mpm"
    refiner = getattr(lifter, "refiner", None)  # PretrainedLift has none
    results = {
        "checkpoint": checkpoint,
        "store": cfg.store,
        "backbone": backbone,
        "frames": lifter.frames,
        "joints": lifter.joint_set.name,
        "flip": cfg.flip,
        "protocol": protocol,
        "refine": refiner is not None,
        "train": meta,
        "unit": "mm",
    }
    predict = lifter if protocol == "centre" else lifter.predict_clip
    common = dict(
        frames=lifter.frames,
        joint_set=lifter.joint_set,
        flip=cfg.flip,
        device=device,
        protocol=protocol,
        channels=lifter.in_features,
    )
    named = {"centre": "centre-frame", "seq2seq": "sequence-to-sequence"}[protocol]
    if "h36m" in datasets:
        results["h36m"] = evaluate_h36m(
            predict, store["h36m"], subjects=cfg.subjects, cameras=cfg.cameras, refiner=refiner, **common
        )
        print(
            format_h36m_table(
                results["h36m"],
                title=(title or f"Human3.6M, {backbone}, {lifter.frames} frames")
                + f", {named} evaluation"
                + (", flip augmentation" if cfg.flip else "")
                + (", refined (MPM's refine head)" if refiner is not None else ""),
            )
        )
        if refiner is not None:
            raw, refined = results["h36m"]["unrefined"]["average"], results["h36m"]["average"]
            print(
                f"refine head: MPJPE {raw['mpjpe']:.1f} -> {refined['mpjpe']:.1f} mm, "
                f"P-MPJPE {raw['p_mpjpe']:.1f} -> {refined['p_mpjpe']:.1f} mm (unrefined -> refined)"
            )
        chart = plot_action_mpjpe(
            results["h36m"], Path(out) / "h36m_actions.png", title=f"Human3.6M, {backbone}, {named}"
        )
        print(f"wrote {chart}")
        if cfg.completion:
            results["completion_2d"] = evaluate_completion(
                lifter_completer(lifter),
                store["h36m"],
                lifter.frames,
                lifter.joint_set,
                "2d",
                patterns=OCCLUSIONS,
                subjects=cfg.subjects,
                every=cfg.completion_every,
                device=device,
            )
            for name, m in results["completion_2d"].items():
                print(f"completion 2D->3D {name:<24}{m['mpjpe']:8.1f} mm")
        if cfg.pretrained:
            mpm = load_pretrained(cfg.pretrained).to(device)
            results["completion_3d"] = evaluate_completion(
                mpm_completer(mpm),
                store["h36m"],
                cfg.completion_frames or lifter.frames,
                codec.joint_set(mpm.cfg.joints),
                "3d",
                patterns=OCCLUSIONS,
                subjects=cfg.subjects,
                every=cfg.completion_every,
                device=device,
            )
            for name, m in results["completion_3d"].items():
                print(f"completion 3D->3D {name:<24}{m['mpjpe']:8.1f} mm (hidden joints {m['mpjpe_hidden']:.1f})")
    if "mpi_inf_3dhp" in datasets:
        results["mpi_inf_3dhp"] = evaluate_3dhp(predict, store["mpi_inf_3dhp"], refiner=refiner, **common)
        print(format_3dhp_table(results["mpi_inf_3dhp"]))
    write_json(Path(out) / "results.json", results)
    print(f"wrote {Path(out) / 'results.json'}")
    return results


@dataclass
class H36MSummary:
    """The Human3.6M headline of a results.json: Protocol #1 ``mpjpe`` and #2 ``p_mpjpe`` (mm, the mean over
    actions) and the MPJPE per test subject."""

    mpjpe: float
    p_mpjpe: float
    subjects: dict[str, float]


def read_h36m_summary(folder: str | Path) -> H36MSummary:
    """The :class:`H36MSummary` of ``folder/results.json`` (written by :func:`evaluate_lifter`).

    Raises:
        FileNotFoundError: no results.json. ValueError: it holds no Human3.6M results (naming the file).
    """
    path = Path(folder) / "results.json"
    results = json.loads(path.read_text())
    if "h36m" not in results:
        raise ValueError(
            f"{path}: no Human3.6M results (evaluated datasets: {[k for k in EVAL_DATASETS if k in results]})"
        )
    h36m = results["h36m"]
    return H36MSummary(
        mpjpe=h36m["average"]["mpjpe"],
        p_mpjpe=h36m["average"]["p_mpjpe"],
        subjects={s: v["average"]["mpjpe"] for s, v in h36m["subjects"].items()},
    )


SHORTCUTS = {f.name: f"eval.{f.name}" for f in fields(EvalConfig)}  # every option is a flag of its own name


@dataclass
class _EvalRun:
    """The command line's root config (:mod:`training.settings` reads the ``eval`` section)."""

    eval: EvalConfig = field(default_factory=EvalConfig)


def main(argv: list[str] | None = None) -> dict:
    """``python -m finetune.evaluate CKPT --store STORE``: evaluate a finetuned lifter (or, with ``--lift``, a
    pretrained network's own lifting), write results.json, print the tables. Returns the results."""
    p = argparse.ArgumentParser(prog="python -m finetune.evaluate", description=__doc__.splitlines()[0])
    p.add_argument(
        "ckpt",
        help="lifter.pt, or the finetune output folder holding it (with --lift: a "
        "pretraining export or checkpoint folder)",
    )
    p.add_argument(
        "--lift",
        action="store_true",
        help="evaluate the pretraining network's own lifting (2D encoder, shared body, 3D "
        "decoder; no finetuning): what pretraining taught about depth",
    )
    p.add_argument(
        "--bn-shards",
        metavar="SHARDS",
        help="with --lift: re-estimate the lift path's batch-norm "
        "statistics on complete 2D training windows of these shards first (recommended: pretraining's "
        "statistics blend its masked-2D, masked-3D and complete-2D passes)",
    )
    p.add_argument("--out", default=None, help="folder for results.json (default: the checkpoint's)")
    p.add_argument(
        "--render",
        metavar="SEQUENCE",
        action="append",
        help="also animate this Human3.6M sequence's prediction beside its ground truth (an id of results.json's "
        "sequences, e.g. S11_Walking_1_54138969; repeatable): OUT/SEQUENCE.mp4 (or .gif) and .png",
    )
    settings.add_shortcuts(p, _EvalRun, SHORTCUTS)
    args = p.parse_args(argv)
    raw: dict = {}
    for flag, key in SHORTCUTS.items():
        if getattr(args, flag) is not None:
            settings.set_value(raw, key, getattr(args, flag), _EvalRun)
    with user_errors(p.prog):
        cfg = settings.build(_EvalRun, raw, p.prog).eval
        if args.lift and cfg.completion:
            raise ValueError("--completion needs a finetuned lifter, not --lift")
        if args.bn_shards and not args.lift:
            raise ValueError("--bn-shards goes with --lift (a finetuned lifter's statistics are its own)")
        check_store(cfg)
        unknown = sorted(set(args.render or ()) - set(MotionStore.open(cfg.store)["h36m"].ids if args.render else ()))
        if unknown:
            raise KeyError(f"{cfg.store}/h36m: no sequence {unknown[0]!r} (ids as in results.json 'sequences')")
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if args.lift:
            lifter = pretrained_lifter(args.ckpt, device, bn_shards=args.bn_shards)
            meta = {"init": str(args.ckpt), "steps": 0, "bn_shards": args.bn_shards}
        else:
            lifter, meta = load_lifter(args.ckpt, device)
    ckpt = Path(args.ckpt)
    out = Path(args.out) if args.out else (ckpt if ckpt.is_dir() else ckpt.parent)
    with user_errors(p.prog):  # a subject, action or camera the store does not hold
        results = evaluate_lifter(lifter, cfg, out, meta, str(args.ckpt))
        for seq_id in args.render or ():
            print("wrote", *render_sequence(lifter, MotionStore.open(cfg.store)["h36m"], seq_id, out, cfg))
    return results


def render_sequence(lifter: CentrePredictor, view: DatasetView, seq_id: str, out: Path, cfg: EvalConfig) -> list[Path]:
    """Animate one store sequence's centre-frame prediction (``cfg.flip`` and a refine head as evaluated) beside
    its ground truth (:func:`finetune.render.render_lift`) into ``out/<seq_id>.mp4`` (or ``.gif``) and ``.png``.

    Raises:
        KeyError: no such sequence in ``view`` (naming it and the store).
    """
    if seq_id not in view.ids:
        raise KeyError(f"{view.store.url}/{view.name}: no sequence {seq_id!r} (ids as in results.json 'sequences')")
    seq = view[seq_id]
    pred, truth = predict_store_sequence(
        lifter, seq, lifter.frames, lifter.joint_set, flip=cfg.flip, channels=lifter.in_features
    )
    if getattr(lifter, "refiner", None) is not None:  # as evaluated
        pred = refine_sequence(lifter.refiner, seq, pred, lifter.joint_set)
    xy = codec.select_joints(seq.pose2d[..., :2], lifter.joint_set)
    size = (float(seq.meta["width"]), float(seq.meta["height"]))
    no_gaps = np.zeros(xy.shape[:2], bool)
    return render_lift(out / seq_id, xy, no_gaps, pred / 1000, lifter.joint_set, size, seq.meta["fps"], truth / 1000)


if __name__ == "__main__":
    main()
