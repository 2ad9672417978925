#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh (not meant to be called directly):
#   _dist_launch.sh SCRIPT NPROC SCRIPT-ARGS...
# runs tools/SCRIPT under torchrun with --launcher pytorch. Environment: PYTHON (default
# python), PORT (master port, default 29500), NNODES, NODE_RANK, MASTER_ADDR (multi-node).
set -euo pipefail
SCRIPT=$1
NPROC=$2
shift 2
case "$NPROC" in
  ''|*[!0-9]*|0) echo "error: NPROC must be a positive number of processes, got '$NPROC'" >&2; exit 2 ;;
esac
# Several machines: the same command on each, NODE_RANK 0..NNODES-1, MASTER_ADDR = node 0's
# address. A wrong value would leave torchrun waiting for nodes that never come (10 minutes
# before its rendezvous times out), so they are checked here.
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
case "$NNODES" in
  ''|*[!0-9]*|0) echo "error: NNODES must be a positive number of machines, got '$NNODES'" >&2; exit 2 ;;
esac
case "$NODE_RANK" in
  ''|*[!0-9]*) echo "error: NODE_RANK must be a number from 0 to NNODES-1, got '$NODE_RANK'" >&2; exit 2 ;;
esac
if [ "$NODE_RANK" -ge "$NNODES" ]; then
  echo "error: NODE_RANK=$NODE_RANK is not below NNODES=$NNODES." >&2
  echo "  fix: number the machines 0 to $((NNODES - 1)) (NODE_RANK=0 on the master)." >&2
  exit 2
fi
if [ "$NODE_RANK" -gt 0 ] && [ -z "${MASTER_ADDR:-}" ]; then
  echo "error: NODE_RANK=$NODE_RANK needs MASTER_ADDR, the address of the machine with NODE_RANK=0." >&2
  echo "  fix: run the same command on every machine with MASTER_ADDR=<node 0's address> (and the same PORT)." >&2
  exit 2
fi
if [ "$NNODES" -gt 1 ]; then
  RUN="$NNODES-machine run ($NPROC processes each)"
else
  RUN="$NPROC-process run"
fi

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
    printf '%s\n' "$line" >> "$MMSNN_ERROR_DIR/torchrun.log"
    if [ "$quiet" = 0 ] && { [[ "$line" == *torch/distributed/elastic* ]] || \
        [[ "$line" == "Traceback (most recent call last):"* ]]; } && user_error; then
      quiet=1
    fi
    [ "$quiet" = 0 ] && printf '%s\n' "$line"
  done
}
# One line after a rank died (killed, out of memory, an exception): which rank and why, from
# the "Root Cause" block of torchrun's report, which otherwise sits among every rank's traces.
root_cause() {
  awk '/Root Cause/ {f = 1}
       f && /^ *rank *:/ {sub(/^ *rank *: */, ""); rank = $0}
       f && /^ *exitcode *:/ {sub(/^ *exitcode *: */, ""); code = $0}
       f && /^ *traceback *:/ {sub(/^ *traceback *: */, ""); tb = $0}
       END {
         if (rank == "") exit 1
         if (tb ~ /^Signal /) {
           cause = tb; sub(/^Signal /, "killed by signal ", cause); sub(/ received by PID.*/, "", cause)
         } else {
           sub(/ *\(pid.*/, "", code); cause = "exited with code " code " (its error is above)"
         }
         printf "rank %s stopped first, %s", rank, cause
       }' "$MMSNN_ERROR_DIR/torchrun.log" 2>/dev/null
}

# `python -m torch.distributed.run` is torchrun, run by the chosen interpreter
set +e
{
  "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" --master_port="${PORT:-29500}" \
    "$ROOT/tools/$SCRIPT" "$@" --launcher pytorch \
    2>&1 1>&3 3>&- | quiet_after_user_error >&2
  rc=${PIPESTATUS[0]}
} 3>&1
set -e
if [ "$rc" -ne 0 ] && user_error; then
  cat "$(ls "$MMSNN_ERROR_DIR"/rank*.txt | sort -V | head -n 1)" >&2
  exit 2
fi
if [ "$rc" -ne 0 ] && cause="$(root_cause)"; then
  echo "error: the $RUN stopped on all ranks: $cause; torchrun stopped the" \
    "other ranks. Complete checkpoints are kept: continue with the same command and --resume." >&2
fi
exit "$rc"
