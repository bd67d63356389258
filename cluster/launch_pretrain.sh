#!/usr/bin/env bash
# Multi-node pretraining through the `deepspeed` launcher and a hostfile.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: [HOSTFILE=cluster/deepspeed/hostfile] [MASTER_ADDR=node-01] [MASTER_PORT=29500] \
         cluster/launch_pretrain.sh PRETRAIN_ARGS...
e.g.   cluster/launch_pretrain.sh --config run.yaml --shards /shared/shards --out /shared/runs/base

Runs, from the checkout's root,
  deepspeed --hostfile $HOSTFILE --master_addr $MASTER_ADDR --master_port $MASTER_PORT \
            --no_local_rank --module pretrain PRETRAIN_ARGS...
Every rank gets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in its environment.

Two ways to start the nodes:
  * from one node, over passwordless SSH (pdsh by default): the launcher starts every host in the hostfile;
  * one launcher per node (SLURM, Kubernetes, ...): set NODE_RANK on each node (0 = MASTER_ADDR's node,
    in hostfile order); adds --no_ssh --node_rank $NODE_RANK. cluster/slurm/pretrain.sbatch does this.

Environment:
  HOSTFILE     "host slots=N" lines (default cluster/deepspeed/hostfile; see hostfile.example)
  MASTER_ADDR  address of rank 0's node (default: the hostfile's first host)
  MASTER_PORT  free TCP port on that node (default 29500)
  NODE_RANK    this node's index in the hostfile: start only its ranks, without SSH
  LAUNCHER     deepspeed --launcher for the SSH mode: pdsh (default), openmpi, mvapich, mpich, impi, slurm
  DRY_RUN      if set, print the command instead of running it
Over SSH, DeepSpeed forwards only NCCL_*, PYTHON*, UCX_*, MV2_* and MLFLOW* variables to the other nodes;
put others (DS_ACCELERATOR=cpu, OMP_NUM_THREADS, ...) as KEY=VALUE lines in ./.deepspeed_env or
~/.deepspeed_env.
NCCL (GPUs): NCCL_SOCKET_IFNAME=<interface> picks the network card, NCCL_IB_DISABLE=1 turns InfiniBand
off where it is absent or broken, NCCL_DEBUG=INFO logs what NCCL chose.
TXT
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi
if [[ $# -eq 0 ]]; then
  usage >&2
  exit 2
fi

HOSTFILE="${HOSTFILE:-cluster/deepspeed/hostfile}"
if [[ ! -f "$HOSTFILE" ]]; then
  echo "error: no hostfile $HOSTFILE (copy cluster/deepspeed/hostfile.example and edit it)" >&2
  exit 2
fi
if [[ -z "${MASTER_ADDR:-}" ]]; then
  MASTER_ADDR="$(awk '!/^[[:space:]]*(#|$)/ {print $1; exit}' "$HOSTFILE")"
fi
if [[ -z "$MASTER_ADDR" ]]; then
  echo "error: $HOSTFILE lists no host" >&2
  exit 2
fi
MASTER_PORT="${MASTER_PORT:-29500}"

cmd=(deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
if [[ -n "${NODE_RANK:-}" ]]; then
  cmd+=(--no_ssh --node_rank "$NODE_RANK")
else
  cmd+=(--launcher "${LAUNCHER:-pdsh}")
fi
cmd+=(--no_local_rank --module pretrain "$@")

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
