#!/usr/bin/env bash
# Convert every dataset under $DATA into the motion store, then build the shards, as Ray jobs on a cluster.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: RAY_ADDRESS=http://HEAD:8265 DATA=/shared/datasets STORE=/shared/store SHARDS=/shared/shards \
         cluster/ray/submit_ingest.sh [DATASET ...]

Submits, from the checkout's root, one `ray job submit --working-dir .` per dataset:
  python -m ingest h36m         $DATA/h36m          --store $STORE
  python -m ingest mpi-inf-3dhp $DATA/mpi_inf_3dhp  --store $STORE
  python -m ingest amass        $DATA/amass         --store $STORE --body-models $BODY_MODELS
then one `python -m shards build --store $STORE --out $SHARDS`. Each job runs one Ray task per source file
across the cluster and waits until it finishes (its log is streamed here). A rerun skips converted files.

DATASET: any of h36m mpi-inf-3dhp amass (default: those whose folder exists under $DATA).
Environment:
  RAY_ADDRESS     the cluster's job server (dashboard), e.g. http://127.0.0.1:8265 behind `ray dashboard`
  DATA            dataset root with h36m/, mpi_inf_3dhp/, amass/, body_models/, at this path on every node
  STORE           motion store: a path on a file system every node mounts, or an fsspec URL (s3://...)
  SHARDS          shard folder or fsspec URL (default: skip the shard build)
  BODY_MODELS     SMPL-H / SMPL-X folder for AMASS (default $DATA/body_models)
  RAY_AUTH_MODE   token (default; the cluster in cluster.yaml uses Ray's token authentication)
  INGEST_ARGS     extra options for every ingest, e.g. "--overwrite"
TXT
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi
for var in RAY_ADDRESS DATA STORE; do
  if [[ -z "${!var:-}" ]]; then
    echo "error: $var is not set" >&2
    usage >&2
    exit 2
  fi
done
export RAY_ADDRESS
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

# Dataset -> its folder under $DATA.
declare -A FOLDER=([h36m]=h36m [mpi-inf-3dhp]=mpi_inf_3dhp [amass]=amass)
datasets=("$@")
if [[ ${#datasets[@]} -eq 0 ]]; then
  for name in h36m mpi-inf-3dhp amass; do
    if [[ -d "$DATA/${FOLDER[$name]}" ]]; then
      datasets+=("$name")
    else
      echo "skipping $name: no folder $DATA/${FOLDER[$name]}" >&2
    fi
  done
fi
if [[ ${#datasets[@]} -eq 0 ]]; then
  echo "error: no dataset folder under $DATA" >&2
  exit 2
fi

read -r -a extra <<< "${INGEST_ARGS:-}"
for name in "${datasets[@]}"; do
  if [[ -z "${FOLDER[$name]:-}" ]]; then
    echo "error: unknown dataset '$name' (h36m, mpi-inf-3dhp, amass)" >&2
    exit 2
  fi
  args=("$DATA/${FOLDER[$name]}" --store "$STORE" --no-progress "${extra[@]}")
  if [[ "$name" == amass ]]; then
    args+=(--body-models "${BODY_MODELS:-$DATA/body_models}")
  fi
  echo "== ingest $name"
  ray job submit --address "$RAY_ADDRESS" --working-dir . -- python -m ingest "$name" "${args[@]}"
done

if [[ -n "${SHARDS:-}" ]]; then
  echo "== shards build"
  ray job submit --address "$RAY_ADDRESS" --working-dir . -- \
    python -m shards build --store "$STORE" --out "$SHARDS"
fi
