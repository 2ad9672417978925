#!/usr/bin/env bash
# Test a checkpoint with NPROC processes on this machine (torchrun; NCCL on GPUs, gloo on CPU).
#
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options...]
#
# Environment: PYTHON (default python), PORT (master port, default 29500), NNODES,
# NODE_RANK, MASTER_ADDR (multi-node; defaults 1, 0, 127.0.0.1).
set -euo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NPROC [tools/test.py options...]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
if [ ! -f "$CONFIG" ]; then
  echo "error: config file '$CONFIG' does not exist." >&2
  echo "  fix: pass the path of a config, e.g. configs/det/<name>.py or configs/seg/<name>.py" >&2
  exit 2
fi
case "$CHECKPOINT" in
  *://*) ;;  # URLs are fetched by mmengine
  *) if [ ! -f "$CHECKPOINT" ]; then
       echo "error: checkpoint '$CHECKPOINT' does not exist." >&2
       echo "  fix: pass the path of a .pth file written by tools/train.py" >&2
       exit 2
     fi ;;
esac
exec bash "$(dirname "${BASH_SOURCE[0]}")/_dist_launch.sh" test.py "$NPROC" "$CONFIG" "$CHECKPOINT" "$@"
