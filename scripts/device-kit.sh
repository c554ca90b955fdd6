#!/usr/bin/env bash
# The device kit (issue 17, docs/device-kit.md): one command for a lent GPU machine.
#
#   bash scripts/device-kit.sh [--budget-s 540] [--tiny] [other python -m napari_lowdose.kit options]
#
# Installs the carried wheels (device-wheels/, made here by scripts/device-wheels.sh) into
# /tmp/lowdose-site, runs the project from this tree (PYTHONPATH=src, nothing to build),
# and writes everything to $OUT (else ./kit-out). The budget covers the whole command,
# the install included; a hard stop 45 s after it makes sure the command ends.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
budget=540
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[i]}" = "--budget-s" ] && budget=${args[i + 1]%.*}
  [ "${args[i]}" = "--tiny" ] && [ "$budget" = 540 ] && budget=60
done
out=${OUT:-kit-out}
mkdir -p "$out"
export LOWDOSE_KIT_COMMAND="bash scripts/device-kit.sh $*"
py=${PYTHON:-python3}
site=/tmp/lowdose-site
if compgen -G "device-wheels/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" device-wheels/*.whl >>"$out/kit.log" 2>&1 \
    || echo "device-kit: installing the carried wheels failed (see kit.log)" | tee -a "$out/kit.log"
  export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
left=$((budget - ($(date +%s) - start)))
[ "$left" -lt 10 ] && left=10
export PYTHONUNBUFFERED=1
# Replace any --budget-s with what is left after the install.
rest=()
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[i]}" = "--budget-s" ]; then i=$((i + 1)); else rest+=("${args[i]}"); fi
done
timeout --signal=TERM --kill-after=15 $((left + 30)) \
  "$py" -m napari_lowdose.kit --out "$out" --budget-s "$left" "${rest[@]}"
status=$?
echo "device-kit: finished with status $status in $(($(date +%s) - start)) s; files in $out:"
ls -l "$out"
exit $status
