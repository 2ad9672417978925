#!/usr/bin/env bash
# Test a checkpoint on a slurm cluster: GPUS tasks (one per GPU).
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]
#
# Environment: as tools/slurm_train.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON,
# PORT, DRY_RUN=1).
set -euo pipefail

if [ "$#" -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
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
exec bash "$(dirname "${BASH_SOURCE[0]}")/_slurm_launch.sh" "$PARTITION" "$JOB_NAME" test.py \
  "$CONFIG" "$CHECKPOINT" "$@"
