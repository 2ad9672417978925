#!/usr/bin/env bash
# One idempotent set-up for mmsnn on a fresh machine (CPU or GPU).
#
#   bash tools/setup_env.sh          # creates ./.venv and installs everything
#   MMSNN_VENV=/path/venv bash ...   # use (or create) another virtualenv
#
# What it does, and why in this order:
#   1. a virtualenv in the checkout, so nothing touches the system Python;
#   2. torch: a torch already in the venv (e.g. a CUDA build) is kept, otherwise 2.13.0;
#   3. mmcv 2.1.0 with its compiled ops, built from source against *that* torch
#      (PyPI has no wheel for it). The built wheel is cached per torch version under
#      ~/.cache/mmsnn/wheels/torch-<ver>/ because a wheel built for another torch fails at
#      import with undefined symbols; pip's own cache does not key on the torch version,
#      so it is bypassed for this one package;
#   4. mmengine, mmdet, mmseg; spikingjelly without its torchvision/torchaudio requirement
#      (its activation_based modules import neither and they would pull GBs of CUDA wheels);
#   5. mmsnn itself, editable.
# A second run with nothing to do only checks the imports and exits in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMSNN_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.mmsnn-setup-ok"
TORCH_DEFAULT="${MMSNN_TORCH:-torch==2.13.0}"

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$PY" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi

check_all() {
  "$PY" - <<'PY' 2>/dev/null
import importlib, sys
for m in ("torch", "pkg_resources", "mmengine", "mmcv.ops", "mmdet", "mmseg",
          "spikingjelly.activation_based.neuron", "xdist", "mmsnn"):
    importlib.import_module(m)
import mmcv, mmdet, mmseg, mmengine
assert mmcv.__version__ == "2.1.0", mmcv.__version__
assert mmengine.__version__ == "0.10.7", mmengine.__version__
PY
}

# Fast path: everything importable and setup.py unchanged since the last successful run.
setup_hash="$(sha256sum "$ROOT/setup.py" "$0" | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$setup_hash" ] && check_all; then
  log "environment in $VENV is complete (nothing to do)"
  exit 0
fi

PIP=("$PY" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade 'pip>=23' wheel ninja

if "$PY" -c "import torch" 2>/dev/null; then
  log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing $TORCH_DEFAULT"
  "${PIP[@]}" "$TORCH_DEFAULT"
fi
# numpy<2: mmcv 2.1 / mmdet 3.3 / mmseg 1.2 were built against the numpy 1 API.
# setuptools<70: mmcv's build and mmengine at run time (package_utils, used by every
# `mmdet::` / `mmseg::` config) import pkg_resources, which newer setuptools dropped. torch
# declares setuptools>=77 but only its C++-extension builder uses it; pip warns, nothing breaks.
"${PIP[@]}" 'numpy<2' 'mmengine==0.10.7' 'setuptools<70'

if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__)')"
  CUDA_TAG="$("$PY" -c 'import torch; print(torch.version.cuda or "cpu")')"
  WHEELS="${MMSNN_WHEEL_CACHE:-$HOME/.cache/mmsnn/wheels}/torch-${TORCH_VER}-${CUDA_TAG}"
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    log "building mmcv 2.1.0 with ops against torch $TORCH_VER (about 11 min on 2 cores)"
    export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
    "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps \
      --no-cache-dir 'mmcv==2.1.0' -w "$WHEELS"
  else
    log "reusing mmcv wheel built for torch $TORCH_VER from $WHEELS"
  fi
  "${PIP[@]}" --no-deps --force-reinstall "$WHEELS"/mmcv-2.1.0-*.whl
  # mmcv's own light requirements (installed separately because of --no-deps above).
  "${PIP[@]}" addict 'numpy<2' packaging Pillow pyyaml yapf opencv-python
fi

"${PIP[@]}" 'mmdet==3.3.0' 'mmsegmentation==1.2.2' 'numpy<2' ftfy regex
# spikingjelly 2.0.0 lists torchvision/torchaudio but activation_based imports neither;
# what it does import (loguru for its logger) is installed by hand.
"${PIP[@]}" --no-deps 'spikingjelly==2.0.0' loguru
# pytest-xdist: `make test` runs the suite in two processes
"${PIP[@]}" scipy matplotlib tqdm pytest pytest-xdist tensorboard
"${PIP[@]}" --no-deps -e "$ROOT"

if check_all; then
  echo "$setup_hash" > "$STAMP"
  log "done: $("$PY" -c 'import torch, mmcv, mmdet, mmseg; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__)')"
else
  log "set-up finished but an import still fails:"; check_all || true
  "$PY" -c "import mmsnn, mmcv.ops, mmdet, mmseg, spikingjelly.activation_based.neuron"
  exit 1
fi
