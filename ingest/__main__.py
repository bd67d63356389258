"""Command line of the ingest stage.

    python -m ingest h36m SRC --store STORE [--subjects S1 S11] [--address ADDR] [--num-cpus N] [--overwrite]
    python -m ingest mpi-inf-3dhp SRC --store STORE [...]
    python -m ingest amass SRC --store STORE --body-models DIR [...]
    python -m ingest show STORE [--by-camera]
    python -m ingest samples OUT [--datasets h36m ...]

Each conversion is one Ray task per source file (local Ray unless ``--address``; under ``ray job submit`` the
cluster is found automatically). Exit status: 0 when every file converted, 1 when some failed (they are
listed in ``STORE/<dataset>/errors.jsonl``), 2 for bad usage or a SRC holding no file of the dataset.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import defaultdict
from pathlib import Path

from ingest.cli import fail, user_errors
from ingest.job import run_ingest, summary_json
from ingest.samples import WRITERS, write_samples
from ingest.store import MotionStore

READERS = {"h36m": "ingest.h36m", "mpi-inf-3dhp": "ingest.mpi_inf_3dhp", "amass": "ingest.amass"}


def show(store_url: str, by_camera: bool = False) -> str:
    """Per dataset, a table of sequences and frames by split and subject (and camera)."""
    store = MotionStore.open(store_url)
    lines = []
    for name in store.datasets:
        view = store[name]
        groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        for meta, frames in zip(view.metas, view.frame_counts, strict=True):
            key = (meta["split"], str(meta["subject"])) + ((str(meta["camera"]),) if by_camera else ())
            groups[key][0] += 1
            groups[key][1] += frames
        header = ["split", "subject"] + (["camera"] if by_camera else []) + ["sequences", "frames"]
        rows = [[*key, str(n), str(f)] for key, (n, f) in sorted(groups.items())]
        rows.append(["all", ""] + ([""] if by_camera else []) + [str(len(view)), str(view.num_frames)])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append(f"{name}  ({store.url}/{name})")
        for row in [header, *rows]:
            cells = (c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(row, widths, strict=True))
            lines.append("  " + "  ".join(cells))
        errors = store.read_errors(name)
        if errors:
            lines.append(f"  {len(errors)} files failed in the last run: see {store.errors_path(name)}")
    return "\n".join(lines) if lines else f"{store.url}: empty motion store"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command, module in READERS.items():
        p = sub.add_parser(command, help=f"convert {command} into the motion store")
        p.add_argument("src", type=Path, help="the dataset's root folder")
        p.add_argument("--store", required=True, help="motion store path or fsspec URL")
        p.add_argument("--address", help="Ray cluster address (default: a local Ray)")
        p.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
        p.add_argument("--overwrite", action="store_true", help="reconvert files whose part exists")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(module=module)
        importlib.import_module(module).add_arguments(p)
    p = sub.add_parser("show", help="table of a motion store's datasets")
    p.add_argument("store")
    p.add_argument("--by-camera", action="store_true", help="one row per camera too")
    p = sub.add_parser("samples", help="write the embedded default data in the native formats")
    p.add_argument("out", type=Path)
    p.add_argument("--datasets", nargs="+", choices=sorted(WRITERS))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "show":
        print(show(args.store, args.by_camera))
        return 0
    if args.command == "samples":
        with user_errors("python -m ingest samples"):
            written = write_samples(args.out, args.datasets)
        print(f"wrote sample data for {', '.join(written)} under {args.out}")
        return 0
    prog = f"python -m ingest {args.command}"
    with user_errors(prog):
        reader = importlib.import_module(args.module).reader_from_args(args)
    try:
        summary = run_ingest(
            reader,
            args.src,
            args.store,
            overwrite=args.overwrite,
            address=args.address,
            num_cpus=args.num_cpus,
            progress=not args.no_progress,
        )
    except FileNotFoundError as exc:  # no source file at all: bad usage, nothing was written
        fail(prog, str(exc))
    print(summary.line())
    print(summary_json(summary), file=sys.stderr)
    if summary.failed:
        print(
            f"{len(summary.failed)} of {summary.files} files failed; see "
            f"{MotionStore.open(args.store).errors_path(reader.dataset)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
