# Checks the launcher scripts (dist_*.sh, slurm_*.sh) run before starting anything: one
# "error:" line with its fix and exit status 2, as tools/train.py and tools/test.py answer.
# Sourced, not run.

# usage_unless MIN_ARGS NUM_ARGS "USAGE LINE"
usage_unless() {
  if [ "$2" -lt "$1" ]; then
    echo "usage: $3" >&2
    exit 2
  fi
}

check_config() {
  if [ ! -f "$1" ]; then
    echo "error: config file '$1' does not exist." >&2
    echo "  fix: pass the path of a config, e.g. configs/det/<name>.py or configs/seg/<name>.py" >&2
    exit 2
  fi
}

check_checkpoint() {
  case "$1" in
    *://*) ;;  # URLs are fetched by mmengine
    *) if [ ! -f "$1" ]; then
         echo "error: checkpoint '$1' does not exist." >&2
         echo "  fix: pass the path of a .pth file written by tools/train.py" >&2
         exit 2
       fi ;;
  esac
}
