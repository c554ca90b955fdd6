#!/usr/bin/env bash
# Quick start 2: set up .venv (and, as root on Debian/Ubuntu, the system libraries
# napari's Qt/OpenGL tests need under Xvfb), then lint, validate and run the tests.
# Extra arguments go to pytest (e.g. --runslow, -k reader).
set -euo pipefail
cd "$(dirname "$0")/.."
SYSTEM_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0
  libxkbcommon-x11-0 libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libdbus-1-3
  libfontconfig1 libglib2.0-0 fonts-dejavu-core"
if command -v dpkg >/dev/null && ! dpkg -s $SYSTEM_PACKAGES >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing system packages for Qt tests under Xvfb"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $SYSTEM_PACKAGES >/dev/null
  else
    echo "test: warning: install these for the GUI tests: $SYSTEM_PACKAGES" >&2
  fi
fi
bash scripts/setup-env.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/npe2 validate napari-lowdose
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
