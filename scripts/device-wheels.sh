#!/usr/bin/env bash
# Download, here, the wheels the device kit installs on the GPU machine (no network there).
#
#   bash scripts/device-wheels.sh [DIR]     # default DIR: device-wheels/ (git-ignored)
#
# The GPU machine (Python 3.12, x86-64; .library/device/KINDS.md) already has torch,
# numpy, scipy, scikit-image, tifffile, safetensors, numba, matplotlib, pandas, dask's and
# IPython's small helpers (click, cloudpickle, fsspec, pyyaml, toolz, jinja2, psutil, …),
# but not abTEM, ASE, dask, distributed or zarr. This fetches exactly those and what they
# need that the machine lacks, each with --no-deps at a pinned version (the versions the
# project is tested with), then checks that every requirement of every wheel is either
# carried, on the machine, or never imported by the kit (zarr and its codecs, jedi,
# widgetsnbextension: 17 MiB; tests/test_device_kit.py runs the kit with them blocked).
# Re-run after changing the list; it replaces DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-device-wheels}
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
packages=(
  abtem==1.0.11 ase==3.29.0 pyfftw==0.15.1
  dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 tblib==3.2.2
  zict==3.0.0 tornado==6.6.1 importlib_metadata==10.2.0 lazy-importer
  # abTEM's notebook widgets (imported with abtem.visualize)
  ipympl==0.10.0 ipywidgets==8.1.9 comm==0.2.3 traitlets==5.16.1 jupyterlab_widgets==3.0.17
  ipython ipython-pygments-lexers decorator matplotlib-inline pexpect ptyprocess
  prompt_toolkit wcwidth stack_data asttokens executing pure_eval
)
rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
for spec in "${packages[@]}"; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$dir.tmp" "$spec"
done
rm -rf "$dir" && mv "$dir.tmp" "$dir"
"$py" scripts/check_device_wheels.py "$dir"
