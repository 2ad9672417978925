#!/usr/bin/env bash
# Test a checkpoint on a slurm cluster: GPUS tasks (one per GPU).
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]
#
# Environment: as tools/slurm_train.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON,
# PORT, DRY_RUN=1).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/_launch_checks.sh"
usage_unless 4 "$#" "$0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
check_config "$CONFIG"
check_checkpoint "$CHECKPOINT"
exec bash "$(dirname "${BASH_SOURCE[0]}")/_slurm_launch.sh" "$PARTITION" "$JOB_NAME" test.py \
  "$CONFIG" "$CHECKPOINT" "$@"
