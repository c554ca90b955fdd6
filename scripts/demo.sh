#!/usr/bin/env bash
# Quick start 1: set up .venv and run napari-lowdose on its built-in demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/napari-lowdose demo --out demo_out --overwrite "$@"
