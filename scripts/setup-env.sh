#!/usr/bin/env bash
# Create (or refresh) .venv with napari-lowdose, a Qt binding and the test tools.
# Idempotent: re-installs only when pyproject.toml or this script changed.
# torch is installed first from TORCH_SPEC (default: the CPU build torch==2.13.0),
# so that the package's own range (torch>=2.2) is already satisfied and pip does
# not pull a multi-GB CUDA build. With CUDA, set e.g. TORCH_SPEC="torch" beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp=.venv/.lowdose-installed
want=$(cat pyproject.toml scripts/setup-env.sh | sha256sum | cut -c1-16)-$TORCH_SPEC
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing $TORCH_SPEC, then napari-lowdose[testing] (a few minutes the first time)"
  .venv/bin/python -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[testing]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import napari_lowdose, torch, napari" \
    || { echo "setup: installation failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
