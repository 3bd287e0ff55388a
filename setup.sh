#!/usr/bin/env bash
# Create (or refresh) the virtualenv at .venv/ with scalec installed in editable mode.
# CPU machines get the CPU torch wheel; machines with an NVIDIA GPU get the regular CUDA wheel.
# Idempotent: a stamp keyed on pyproject.toml and this script skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.scalec-setup
want=$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then "${pip[@]}" torch; else "${pip[@]}" "torch==2.13.0"; fi
  fi
  "${pip[@]}" -e ".[dev,hf]"
  # The `mup` reference package is only used by the agreement tests; its declared deps
  # (torchvision, seaborn, pandas) are not needed for what we import, so skip them.
  "${pip[@]}" --no-deps "mup==1.0.0"
  echo "$want" > "$stamp"
fi
