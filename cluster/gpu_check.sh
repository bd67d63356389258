#!/usr/bin/env bash
# Is this GPU machine ready for posemill? A few minutes of checks, one JSON line each; exit 1 if any fails.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: cluster/gpu_check.sh [--cpu] [--only GROUPS] [--peak-tflops T] [--memory-budget-gb G] [--keep DIR]

Checks one NVIDIA GPU in under 5 minutes. Each check prints one JSON line on stdout,
{"check": NAME, "ok": true|false, "seconds": S, ...its figures}, plus "error" (the exit status and the
command's last output lines) when it fails. Exit status: 0 all passed, 1 a check failed, 2 a usage error.
Groups (--only picks some, comma-separated; default all four):

  bench      pretrain_bench: python -m pretrain.bench --preset mpm --frames 243 --dtype bf16 (batch 16,
             training/deepspeed/gpu_bf16_zero1.json): samples_per_s, achieved_tflops, peak_tflops and
             mfu = achieved / peak, the model FLOP utilisation. The peak is the device's dense bf16 figure:
             --peak-tflops, else BF16_PEAK in pretrain/bench.py by device name (H100 / H200 SXM 989,
             A100 312, L40S 362, L4 121, A10G 70 TFLOP/s), else unknown (mfu null);
             peak_memory: that bench's peak GPU memory (torch's max_memory_allocated), failing above
             --memory-budget-gb (default: the GPU's memory)
  train      data: tiny shards made on the spot (python -m ingest samples --datasets h36m, python -m ingest
             h36m, python -m shards build --clip-len 27);
             pretrain_resume: python -m pretrain, tiny preset, one GPU, DeepSpeed ZeRO-1 in bf16, stopped
             after 4 of 8 steps (train.stop_after) and continued with --resume;
             finetune_resume: python -m finetune from that export, 3 steps, then --resume to 6;
             each passes when every step is logged once and the last checkpoint is complete
  eval       eval_bench: python -m finetune.bench --preset mpm --frames 243 --dtype bf16 --device cuda:
             evaluation frames/s (centre-frame and sequence-to-sequence) and training windows/s
  allreduce  allreduce: a one-rank NCCL all_reduce of 256 MiB: the sum is right; its bus rate

Options:
  --cpu                 the same checks on CPU (DS_ACCELERATOR=cpu, gloo, tiny sizes, bf16 through CPU
                        autocast, ZeRO-1 in fp32): how tests/test_gpu_check.py tests this script
  --only GROUPS         e.g. --only bench,allreduce
  --peak-tflops T       the device's dense bf16 peak, TFLOP/s (a GPU not in the table, a PCIe / NVL part)
  --memory-budget-gb G  peak_memory fails above G GB (e.g. 24: does the bench fit a 24 GB card?)
  --keep DIR            work in DIR (logs, data, runs) and keep it; default: a temporary folder, removed
Environment: PYTHON (default: the checkout's .venv/bin/python); DS_ACCELERATOR must be unset for a GPU.
TXT
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
CPU=0
ONLY=bench,train,eval,allreduce
PEAK=
BUDGET=
WORK=
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --cpu) CPU=1 ;;
    --only | --peak-tflops | --memory-budget-gb | --keep)
      [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
      case $1 in
        --only) ONLY=$2 ;;
        --peak-tflops) PEAK=$2 ;;
        --memory-budget-gb) BUDGET=$2 ;;
        --keep) WORK=$2 ;;
      esac
      shift ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for group in ${ONLY//,/ }; do
  case $group in
    bench | train | eval | allreduce) ;;
    *) echo "error: --only: unknown group $group (bench, train, eval, allreduce)" >&2; exit 2 ;;
  esac
done
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

if [[ -n "$WORK" ]]; then
  mkdir -p "$WORK"
  WORK=$(cd "$WORK" && pwd)
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
cd "$ROOT"

if ((CPU)); then
  export DS_ACCELERATOR=cpu
  BENCH=(--preset tiny --frames 27 --batch-size 4 --steps 2 --warmup 1)
  EVAL=(--preset tiny --frames 27 --sequence 100 --batch-size 4 --threads 2 --device cpu)
  DS_JSON=$WORK/cpu_zero1.json
  echo '{"zero_optimization": {"stage": 1}, "zero_allow_untested_optimizer": true}' >"$DS_JSON"
  BACKEND=gloo
  MIB=16
else
  if [[ -n "${DS_ACCELERATOR:-}" && "$DS_ACCELERATOR" != cuda ]]; then
    echo "error: DS_ACCELERATOR=$DS_ACCELERATOR: unset it for a GPU (or pass --cpu)" >&2
    exit 2
  fi
  BENCH=(--preset mpm --frames 243 --batch-size 16)
  EVAL=(--preset mpm --frames 243 --device cuda)
  DS_JSON=gpu_bf16_zero1
  BACKEND=nccl
  MIB=256
fi

FAILED=0

run() { # run NAME LIMIT_S CMD...: CMD, bounded, its output appended to $WORK/NAME.log; STATUS = its exit status
  local name=$1 limit=$2
  shift 2
  echo "\$ $*" >>"$WORK/$name.log"
  STATUS=0
  timeout --kill-after=10 "$limit" "$@" >>"$WORK/$name.log" 2>&1 || STATUS=$?
}

report() { # report NAME STATUS START [KEY=VALUE...]: print NAME's JSON line from $WORK; FAILED=1 if it failed
  "$PY" - "$WORK" "$1" "$2" "$((SECONDS - $3))" "${@:4}" <<'PY' || FAILED=1
import json
import math
import sys
from pathlib import Path

work, name, status, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
opts = dict(arg.split("=", 1) for arg in sys.argv[5:])


def last_json(log: str) -> dict:
    """The last line of work/LOG.log that is a JSON object (the commands print their result so)."""
    for line in reversed((work / f"{log}.log").read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in {work / log}.log")


def resumed(out: str, total: int) -> tuple[dict, str | None]:
    """A run resumed to ``total`` steps: every step logged once, the last checkpoint complete, a finite loss."""
    records = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines() if line]
    ckpt = work / out / "checkpoints"
    tag = (ckpt / "latest").read_text().strip()
    figures = {"steps": [r["step"] for r in records][-1], "loss": records[-1]["loss"], "latest": tag}
    if [r["step"] for r in records] != list(range(1, total + 1)):
        return figures, f"logged steps {[r['step'] for r in records]}, not 1..{total} once each"
    if tag != f"step{total:08d}" or not (ckpt / tag / "complete.json").is_file():
        return figures, f"the last checkpoint is {tag}, not a complete step{total:08d}"
    return figures, None if math.isfinite(records[-1]["loss"]) else "the loss is not finite"


def pretrain_bench():
    r = last_json("pretrain_bench")
    peak = r["bf16_peak_flops_per_s"]
    figures = {
        "device": r["device"], "preset": r["preset"], "frames": r["frames"], "batch_size": r["batch_size"],
        "dtype": "bf16", "samples_per_s": r["bf16_samples_per_s"],
        "achieved_tflops": r["bf16_achieved_flops_per_s"] / 1e12, "peak_tflops": peak / 1e12 if peak else None,
        "mfu": r["bf16_fraction_of_peak"],
    }  # fmt: skip
    return figures, None if r["bf16_samples_per_s"] > 0 else "no step measured"


def peak_memory():
    r = last_json("pretrain_bench")
    peak, total = r["bf16_peak_memory_bytes"], r["device_memory_bytes"]
    budget = float(opts["budget_gb"]) * 1e9 if opts.get("budget_gb") else total
    figures = {"device": r["device"], "peak_gb": peak / 1e9, "device_gb": total / 1e9, "budget_gb": budget / 1e9}
    return figures, f"{peak / 1e9:.3f} GB above the budget of {budget / 1e9:g} GB" if peak > budget else None


def data():
    manifest = json.loads((work / "shards" / "manifest.json").read_text())
    figures = {"shards": len(manifest["shards"]), "clip_len": manifest["clip_len"]}
    return figures, None if manifest["shards"] else "no shard built"


def allreduce():
    r = last_json("allreduce")
    return r, None if r.pop("correct") else "wrong sum"


def eval_bench():
    r = last_json("eval_bench")
    keys = ("device", "preset", "frames", "dtype", "eval_frames_per_s", "eval_seq2seq_frames_per_s")
    figures = {k: r[k] for k in (*keys, "train_windows_per_s")}
    return figures, None if r["eval_frames_per_s"] > 0 else "no frame evaluated"


CHECKS = {
    "pretrain_bench": pretrain_bench,
    "peak_memory": peak_memory,
    "data": data,
    "pretrain_resume": lambda: resumed("pretrain", 8),
    "finetune_resume": lambda: resumed("finetune", 6),
    "eval_bench": eval_bench,
    "allreduce": allreduce,
}
line, error = {"check": name, "ok": False, "seconds": seconds}, None
if status:
    log = work / f"{opts.get('log', name)}.log"
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
    error = f"exit status {status}{' (timed out)' if status in (124, 137) else ''}: " + "\n".join(tail)
else:
    try:
        figures, error = CHECKS[name]()
        line |= figures
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
line["ok"] = error is None
if error:
    line["error"] = error
print(json.dumps(line), flush=True)
sys.exit(0 if line["ok"] else 1)
PY
}

if wanted bench; then
  start=$SECONDS
  run pretrain_bench 300 "$PY" -m pretrain.bench "${BENCH[@]}" --dtype bf16 ${PEAK:+--peak-tflops "$PEAK"}
  report pretrain_bench "$STATUS" "$start"
  report peak_memory "$STATUS" "$start" log=pretrain_bench budget_gb="$BUDGET"
fi

if wanted train; then
  start=$SECONDS
  run data 300 "$PY" -m ingest samples "$WORK/data" --datasets h36m
  ((STATUS)) || run data 300 "$PY" -m ingest h36m "$WORK/data/h36m" --store "$WORK/store" --no-progress
  ((STATUS)) || run data 300 "$PY" -m shards build --store "$WORK/store" --out "$WORK/shards" --clip-len 27
  report data "$STATUS" "$start"
  pretrain=(-m pretrain --preset tiny --shards "$WORK/shards" --out "$WORK/pretrain" --steps 8 --batch-size 8
    --deepspeed-config "$DS_JSON" --no-progress --set "data.datasets=[h36m]" --set train.warmup_steps=2
    --set train.log_every=1 --set train.checkpoint_every=4)
  start=$SECONDS
  run pretrain_resume 300 "$PY" "${pretrain[@]}" --set train.stop_after=4
  ((STATUS)) || run pretrain_resume 300 "$PY" "${pretrain[@]}" --resume
  report pretrain_resume "$STATUS" "$start"
  finetune=(-m finetune --init "$WORK/pretrain/pretrained.pt" --shards "$WORK/shards" --out "$WORK/finetune"
    --batch-size 16 --log-every 1 --no-evaluate --no-progress --deepspeed-config "$DS_JSON"
    --set train.checkpoint_every=3)
  start=$SECONDS
  run finetune_resume 300 "$PY" "${finetune[@]}" --max-steps 3
  ((STATUS)) || run finetune_resume 300 "$PY" "${finetune[@]}" --max-steps 6 --resume
  report finetune_resume "$STATUS" "$start"
fi

if wanted eval; then
  start=$SECONDS
  run eval_bench 300 "$PY" -m finetune.bench "${EVAL[@]}" --dtype bf16
  report eval_bench "$STATUS" "$start"
fi

if wanted allreduce; then
  start=$SECONDS
  run allreduce 120 "$PY" - "$BACKEND" "$MIB" <<'PY'
import json
import socket
import sys
import time

import torch
import torch.distributed as dist

backend, mib = sys.argv[1], int(sys.argv[2])
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
x = torch.full((mib * 2**20 // 4,), 1.5, device=device)
dist.all_reduce(x)  # the first call sets the communicator up
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
sync()
start = time.perf_counter()
for _ in range(10):
    dist.all_reduce(x)
sync()
seconds = (time.perf_counter() - start) / 10
correct = bool((x == 1.5).all())  # one rank: the sum is the tensor itself
dist.destroy_process_group()
print(json.dumps({"backend": backend, "mib": mib, "gbytes_per_s": x.numel() * 4 / seconds / 1e9, "correct": correct}))
PY
  report allreduce "$STATUS" "$start"
fi

exit "$FAILED"
