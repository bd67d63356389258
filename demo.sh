#!/usr/bin/env bash
# The main job, end to end: ingest -> shards -> data-scaling ablation (pretrain, finetune, evaluate).
#
#   ./demo.sh [DATA] [OUT]      (what `make demo [DATA=DIR]` runs, after setting up .venv)
#
# Without DATA it runs on the embedded default data (`python -m ingest samples`). DATA is a data root
# holding any of h36m/, mpi_inf_3dhp/, amass/ in their native layouts, and body_models/ for AMASS; missing
# datasets are skipped with a message. AMASS without body_models/ runs on the stand-in body model, loudly.
# Each stage is the command a user would type; they are echoed as they run, with their wall times.
# Environment knobs (`make ablation` sets them for the real-data recipe): CONFIG (pretraining config: a file
# or a shipped name, pretrain/configs/*.yaml), SCALES (mixtures of shards/mixtures.json; default small base
# [large]), FINETUNE_CONFIG (finetuning config, finetune/configs/), PROBE=1 (frozen-feature probes and the
# pretrained networks' own lifting), EVAL (test subjects), SEEDS (finetuning seeds per scale and baseline),
# CLIP_LEN, ABLATION_DIR (the ablation's results folder, default OUT/ablation).
set -euo pipefail

DATA=${1:-}
OUT=${2:-runs/demo}
PY=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-demo}
CLIP_LEN=${CLIP_LEN:-27}
FINETUNE_CONFIG=${FINETUNE_CONFIG:-demo}
STORE=$OUT/store
SHARDS=$OUT/shards
ABLATION_DIR=${ABLATION_DIR:-$OUT/ablation}
TIMES=()

stage() {  # stage NAME CMD...: echo, run, time; returns the command's status
  local name=$1 t0=$SECONDS status=0
  shift
  echo "==> $name: $*"
  "$@" || status=$?
  TIMES+=("$(printf '%-22s %5d s' "$name" $((SECONDS - t0)))")
  return $status
}

convert() {  # convert DATASET FOLDER [ARGS...]: one ingest stage, skipped when the folder is absent
  local name=$1 folder=$2
  shift 2
  if [ ! -d "$DATA/$folder" ]; then
    echo "skipped $name: no $DATA/$folder"
    return
  fi
  local code=0
  stage "ingest $name" "$PY" -m ingest "$name" "$DATA/$folder" --store "$STORE" --no-progress "$@" || code=$?
  case $code in
    0) ;;
    2) echo "skipped $name: $DATA/$folder holds no file to convert (see the error above)" ;;
    *) echo "WARNING: some $name files did not convert (listed in $STORE/*/errors.jsonl); going on" ;;
  esac
}

mkdir -p "$OUT"
if [ -z "$DATA" ]; then
  stage "samples" "$PY" -m ingest samples "$OUT/data"
  DATA=$OUT/data
fi

convert h36m h36m
convert mpi-inf-3dhp mpi_inf_3dhp
if [ -d "$DATA/amass" ]; then
  if [ -d "$DATA/body_models" ]; then
    BODY_MODELS=$DATA/body_models
  else
    bar=$(printf '!%.0s' {1..100})
    echo "$bar"
    echo "WARNING: no $DATA/body_models: AMASS is converted with the STAND-IN body model, not SMPL-H/SMPL-X."
    echo "Its 3D joints are not the subjects' own; the store and the results (results.json) say so."
    echo "$bar"
    [ -d "$OUT/stand_in/body_models" ] || "$PY" -m ingest samples "$OUT/stand_in" --datasets amass
    BODY_MODELS=$OUT/stand_in/body_models
  fi
  convert amass amass --body-models "$BODY_MODELS"
else
  echo "skipped amass: no $DATA/amass"
fi
if [ ! -d "$STORE/h36m" ]; then
  echo "error: $DATA holds no Human3.6M (h36m/): finetuning and evaluation need it" >&2
  exit 2
fi

if [ -f "$SHARDS/manifest.json" ]; then  # a rerun (more seeds, after an interruption) keeps the shards
  echo "shards: $SHARDS/manifest.json exists, kept (remove $SHARDS to rebuild from the store)"
else
  stage "shards" "$PY" -m shards build --store "$STORE" --out "$SHARDS" --clip-len "$CLIP_LEN"
fi
if [ -n "${SCALES:-}" ]; then
  read -r -a scales <<< "$SCALES"
else
  scales=(small base)
  if [ -d "$STORE/amass" ]; then scales+=(large); else echo "scale 'large' skipped: no AMASS in the store"; fi
fi
stage "ablation" "$PY" -m experiments.ablate --shards "$SHARDS" --store "$STORE" --scales "${scales[@]}" \
  --out "$ABLATION_DIR" --config "$CONFIG" --finetune-config "$FINETUNE_CONFIG" \
  ${PROBE:+--probe --lift} ${EVAL:+--eval-subjects $EVAL} ${SEEDS:+--seeds $SEEDS}

echo
echo "wall time per stage:"
printf '  %s\n' "${TIMES[@]}"
echo "results table: $ABLATION_DIR/results.md"
echo "plot:          $ABLATION_DIR/data_scaling.png"
