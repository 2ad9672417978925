#!/usr/bin/env bash
# Train with NPROC processes on this machine (torchrun; NCCL on GPUs, gloo on CPU).
#
#   tools/dist_train.sh CONFIG NPROC [tools/train.py options...]
#
# Environment: PYTHON (default python), PORT (master port, default 29500), NNODES,
# NODE_RANK, MASTER_ADDR (multi-node; defaults 1, 0, 127.0.0.1).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/_launch_checks.sh"
usage_unless 2 "$#" "$0 CONFIG NPROC [tools/train.py options...]"
CONFIG=$1
NPROC=$2
shift 2
check_config "$CONFIG"
exec bash "$(dirname "${BASH_SOURCE[0]}")/_dist_launch.sh" train.py "$NPROC" "$CONFIG" "$@"
