#!/usr/bin/env bash
# Test a checkpoint with NPROC processes on this machine (torchrun; NCCL on GPUs, gloo on CPU).
#
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options...]
#
# Environment: PYTHON (default python), PORT (master port, default 29500), NNODES,
# NODE_RANK, MASTER_ADDR (multi-node; defaults 1, 0, 127.0.0.1).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/_launch_checks.sh"
usage_unless 3 "$#" "$0 CONFIG CHECKPOINT NPROC [tools/test.py options...]"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
check_config "$CONFIG"
check_checkpoint "$CHECKPOINT"
exec bash "$(dirname "${BASH_SOURCE[0]}")/_dist_launch.sh" test.py "$NPROC" "$CONFIG" "$CHECKPOINT" "$@"
