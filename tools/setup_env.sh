#!/usr/bin/env bash
# Creates .venv with the pinned OpenMMLab stack of requirements.txt and installs mmlavit into it.
# Idempotent: a second run finds everything satisfied and reinstalls nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
# --isolated ignores the machine's pip config, whose local torch +cpu wheel breaks torchvision.
PIP=("$VENV/bin/python" -m pip install --isolated --disable-pip-version-check -q)

pin() { grep -E "^$1([<>=!~ ]|$)" requirements.txt | head -n 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

echo "[setup] torch, torchvision (CUDA build from the package index; runs on CPU)"
"${PIP[@]}" "$(pin torch)" "$(pin torchvision)"
echo "[setup] build tools and numpy"
"${PIP[@]}" "$(pin setuptools)" "$(pin wheel)" "$(pin ninja)" "$(pin psutil)" "$(pin numpy)" \
  "$(pin opencv-python)" "$(pin mmengine)"
if ! "$VENV/bin/python" -c "import mmcv, mmcv._ext" 2>/dev/null; then
  echo "[setup] mmcv from source with ops (the longest step the first time; pip caches the wheel)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
    "${PIP[@]}" --no-build-isolation --no-binary mmcv "$(pin mmcv)"
fi
echo "[setup] the rest of requirements.txt"
"${PIP[@]}" -r requirements.txt
echo "[setup] mmlavit (editable)"
"${PIP[@]}" --no-build-isolation --no-deps -e .
"$VENV/bin/python" tools/check_env.py
