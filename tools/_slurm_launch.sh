#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh (not meant to be called directly):
#   _slurm_launch.sh PARTITION JOB_NAME SCRIPT SCRIPT-ARGS...
# runs tools/SCRIPT in GPUS tasks under srun with --launcher slurm (mmengine reads the rank,
# world size and master node from slurm's environment). Environment: GPUS (default 8),
# GPUS_PER_NODE (default 8, at most GPUS), CPUS_PER_TASK (default 5), SRUN_ARGS (more srun
# options), PYTHON (default python), PORT (master port, default 29500), DRY_RUN=1 (print the
# srun command, shell-quoted, instead of running it).
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
shift 3

GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PORT=${PORT:-29500}
for var in GPUS GPUS_PER_NODE CPUS_PER_TASK PORT; do
  case "${!var}" in
    ''|*[!0-9]*|0) echo "error: $var must be a positive number, got '${!var}'" >&2
                   echo "  fix: e.g. GPUS=16 GPUS_PER_NODE=8 (two nodes of 8 GPUs)" >&2
                   exit 2 ;;
  esac
done
# a job smaller than one node asks for the GPUs it uses, not for a whole node's
if [ "$GPUS" -lt "$GPUS_PER_NODE" ]; then
  GPUS_PER_NODE=$GPUS
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# srun passes the environment on to every task: the checkout on PYTHONPATH, and one master
# port for all of them (mmengine would otherwise pick a free port per task when 29500 is taken)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MASTER_PORT="$PORT"
# SRUN_ARGS is a string of options, split as the shell splits words (as in mmdet's scripts)
read -r -a SRUN_EXTRA <<< "${SRUN_ARGS:-}"
CMD=(srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE"
     --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK"
     --kill-on-bad-exit=1 ${SRUN_EXTRA[@]+"${SRUN_EXTRA[@]}"}
     "${PYTHON:-python}" -u "$ROOT/tools/$SCRIPT" "$@" --launcher slurm)

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "PYTHONPATH=$(printf '%q' "$PYTHONPATH") MASTER_PORT=$MASTER_PORT $(printf '%q ' "${CMD[@]}")"
  exit 0
fi
if ! command -v srun >/dev/null 2>&1; then
  echo "error: srun not found: tools/slurm_train.sh and slurm_test.sh run on a slurm cluster." >&2
  echo "  fix: run it on a slurm login node, or use tools/dist_train.sh / dist_test.sh" \
    "(torchrun; NNODES, NODE_RANK, MASTER_ADDR for several machines)." >&2
  exit 2
fi
exec "${CMD[@]}"
