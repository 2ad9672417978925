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
case "$NPROC" in
  ''|*[!0-9]*|0) echo "error: NPROC must be a positive number of processes, got '$NPROC'" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# A bad input stops every process with the same message. Each writes it to $MMSNN_ERROR_DIR
# instead of printing it; it is printed here once, without torchrun's failure report (whose
# traceback is about torchrun, not about the problem), and the script exits with status 2.
MMSNN_ERROR_DIR="$(mktemp -d)"
export MMSNN_ERROR_DIR
trap 'rm -rf "$MMSNN_ERROR_DIR"' EXIT
user_error() { ls "$MMSNN_ERROR_DIR"/rank*.txt >/dev/null 2>&1; }
quiet_after_user_error() {
  local line quiet=0
  while IFS= read -r line || [ -n "$line" ]; do
    if [ "$quiet" = 0 ] && { [[ "$line" == *torch/distributed/elastic* ]] || \
        [[ "$line" == "Traceback (most recent call last):"* ]]; } && user_error; then
      quiet=1
    fi
    [ "$quiet" = 0 ] && printf '%s\n' "$line"
  done
}

# `python -m torch.distributed.run` is torchrun, run by the chosen interpreter
set +e
{
  "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" --master_port="${PORT:-29500}" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@" \
    2>&1 1>&3 3>&- | quiet_after_user_error >&2
  rc=${PIPESTATUS[0]}
} 3>&1
set -e
if [ "$rc" -ne 0 ] && user_error; then
  cat "$(ls "$MMSNN_ERROR_DIR"/rank*.txt | sort -V | head -n 1)" >&2
  exit 2
fi
exit "$rc"
