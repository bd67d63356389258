"""The run log of both training stages: ``metrics.jsonl`` (one JSON object per logged step) and its
loss-curve plot."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ingest.atomic import atomic_path, write_text


class MetricsLog:
    """Appends ``{"step": ..., ...}`` lines to ``path`` (rank 0 only writes; other ranks no-op).

    On resume from step ``resume_step``, lines of later steps (logged after the last checkpoint of the
    stopped run) are dropped first, so every step appears once, and so is a torn last line (a run killed
    while writing it; a warning names the file).
    """

    def __init__(self, path: str | Path, *, enabled: bool = True, resume_step: int | None = None):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and self.path.is_file():
            kept = [line for line in read_metrics(self.path, torn_tail=True) if line["step"] <= resume_step]
        write_text(self.path, "".join(json.dumps(line) + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path, torn_tail: bool = False) -> list[dict]:
    """Records of a metrics.jsonl file. With ``torn_tail`` a last line without its newline that is not JSON
    (the write of a killed run) is dropped with a warning.

    Raises:
        ValueError: naming the file and line, when a line is not JSON.
    """
    text = Path(path).read_text()
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if torn_tail and i == len(lines) and not text.endswith("\n"):
                    warnings.warn(
                        f"{path}:{i}: dropped a torn last line (the run stopped while writing it)", stacklevel=2
                    )
                    break
                raise ValueError(f"{path}:{i}: not a JSON line: {exc}") from exc
    return records


def plot_curves(
    metrics_path: str | Path,
    png_path: str | Path,
    keys: tuple[str, ...] = ("loss", "loss_2d", "loss_3d", "loss_lift", "loss_reproject", "loss_bone"),
    title: str | None = None,
) -> Path:
    """Plot ``keys`` against ``step`` from a metrics.jsonl into a PNG (log y axis: values of 0, e.g. a term
    whose windows a batch lacked, are left out); written atomically.

    Raises:
        ValueError: no record carries any of ``keys``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    plotted = 0
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None and r[key] > 0]  # log axis
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key)
            plotted += 1
    if not plotted:
        plt.close(fig)
        raise ValueError(f"{metrics_path}: no record has any of {keys}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (MPJPE-style)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or str(Path(metrics_path).parent.name))
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return png_path
