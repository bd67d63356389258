"""``python -m shards {build,verify,inspect}``: build shards from a motion store, check them, show totals.

Examples::

    python -m shards build --store STORE --out SHARDS [--datasets h36m amass] [--dtype float16]
    python -m shards verify SHARDS          # exit status 1 and one line per differing/missing shard
    python -m shards inspect SHARDS [--mixture base] [--clip-len 243 --stride 1]
"""

from __future__ import annotations

import argparse
import json
import sys

from ingest.cli import user_errors
from shards import DATASETS
from shards.manifest import format_table, load_manifest, mixture_windows, verify
from shards.mixtures import resolve
from shards.writer import DEFAULT_COUNT_CLIP_LENS, build


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shards", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="motion store -> webdataset shards + manifest.json")
    b.add_argument("--store", required=True, help="motion store path or fsspec URL")
    b.add_argument("--out", required=True, help="shard folder")
    b.add_argument("--datasets", nargs="+", choices=DATASETS, help="default: every dataset in the store")
    b.add_argument("--segment-len", type=int, default=1024, help="frames per segment (default 1024)")
    b.add_argument(
        "--clip-len",
        type=int,
        default=243,
        help="longest training window; segments overlap by clip_len - 1 (default 243)",
    )
    b.add_argument("--shard-size", type=int, default=64 << 20, help="target bytes per shard (default 64 MiB)")
    b.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    b.add_argument(
        "--count-clip-lens",
        type=int,
        nargs="+",
        default=list(DEFAULT_COUNT_CLIP_LENS),
        help="clip lengths whose stride-1 windows the manifest counts",
    )
    b.add_argument("--overwrite", action="store_true", help="rebuild datasets already in the manifest")
    b.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    b.add_argument("--num-cpus", type=int, help="CPUs of the local Ray")
    v = sub.add_parser("verify", help="recheck every shard's checksum and counts")
    v.add_argument("shards")
    i = sub.add_parser("inspect", help="print the manifest's totals, or a mixture's windows per dataset")
    i.add_argument("shards")
    i.add_argument("--mixture", help="mixture name (built-in or from --mixtures)")
    i.add_argument("--mixtures", help="JSON file of user-defined mixtures")
    i.add_argument("--split", default="train")
    i.add_argument("--clip-len", type=int, help="default: the manifest's clip length")
    i.add_argument("--stride", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a missing store or shard folder, an unknown mixture or a bad option is one line
    on stderr and exit status 2 (:mod:`ingest.cli`)."""
    args = build_parser().parse_args(argv)
    with user_errors(f"python -m shards {args.command}"):
        return run(args)


def run(args: argparse.Namespace) -> int:
    if args.command == "build":
        manifest = build(
            args.store,
            args.out,
            datasets=args.datasets,
            segment_len=args.segment_len,
            clip_len=args.clip_len,
            shard_size=args.shard_size,
            dtype=args.dtype,
            count_clip_lens=tuple(args.count_clip_lens),
            overwrite=args.overwrite,
            address=args.address,
            num_cpus=args.num_cpus,
        )
        print(format_table(manifest))
        short = sum(t["short"] for splits in manifest["totals"].values() for t in splits.values())
        print(
            f"{short} sequences shorter than clip_len {args.clip_len} kept (padded by edge replication when streamed)"
        )
        return 0
    if args.command == "verify":
        problems = verify(args.shards)
        for line in problems:
            print(line)
        print(f"{len(problems)} problem(s) in {args.shards}", file=sys.stderr)
        return 1 if problems else 0
    manifest = load_manifest(args.shards)
    if not args.mixture:
        print(format_table(manifest))
        return 0
    shares = resolve(args.mixture, mixtures_file=args.mixtures)
    windows = mixture_windows(manifest, shares, args.split, args.clip_len, args.stride)
    clip = args.clip_len or manifest["clip_len"]
    for dataset, n in windows.items():
        print(f"{dataset:14s} fraction {shares[dataset].fraction:<5g} weight {shares[dataset].weight:<5g} windows {n}")
    print(
        json.dumps(
            {
                "mixture": args.mixture,
                "split": args.split,
                "clip_len": clip,
                "stride": args.stride,
                "windows": windows,
                "total": sum(windows.values()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
