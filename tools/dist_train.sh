#!/usr/bin/env bash
# Train with NPROC processes on this machine (torchrun; NCCL on GPUs, gloo on CPU).
#
#   tools/dist_train.sh CONFIG NPROC [tools/train.py options...]
#
# Environment: PYTHON (default python), PORT (master port, default 29500), NNODES,
# NODE_RANK, MASTER_ADDR (multi-node; defaults 1, 0, 127.0.0.1).
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 CONFIG NPROC [tools/train.py options...]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
if [ ! -f "$CONFIG" ]; then
  echo "error: config file '$CONFIG' does not exist." >&2
  echo "  fix: pass the path of a config, e.g. configs/det/<name>.py or configs/seg/<name>.py" >&2
  exit 2
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/_dist_launch.sh" train.py "$NPROC" "$CONFIG" "$@"
