#!/usr/bin/env bash
# Train on a slurm cluster: GPUS tasks (one per GPU) over as many nodes as that takes.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options...]
#
# Environment: GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5),
# SRUN_ARGS (more srun options, e.g. "--time=24:00:00"), PYTHON (default python), PORT (master
# port, default 29500), DRY_RUN=1 (print the srun command instead of running it).
# A pre-empted job continues with the same command and --resume.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/_launch_checks.sh"
usage_unless 4 "$#" "$0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options...]"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
check_config "$CONFIG"
exec bash "$(dirname "${BASH_SOURCE[0]}")/_slurm_launch.sh" "$PARTITION" "$JOB_NAME" train.py \
  "$CONFIG" --work-dir "$WORK_DIR" "$@"
