#!/usr/bin/env bash
# Set up auglabel's environment in ./.venv (idempotent; a second run is a quick no-op).
#  - Debian's dataset-fashion-mnist (real Fashion-MNIST under /usr/share/datasets) when apt is usable;
#  - a virtual environment with PyTorch (a local CPU wheel when the machine has one) and auglabel
#    installed editable with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  echo "setup: installing Debian's dataset-fashion-mnist" >&2
  if ! { $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
         { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; }; then
    echo "setup: could not install dataset-fashion-mnist; the demo will fall back to scikit-learn's digits" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.auglabel-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # Prefer a CPU build already on this machine's disk over a multi-GB CUDA download.
  tag=$(.venv/bin/python -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  wheel=$(ls /opt/wheels/torch-*+cpu-"$tag"-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$wheel" ]; then
    echo "setup: installing PyTorch from $wheel" >&2
    .venv/bin/pip install -q "$wheel"
  fi
fi
echo "setup: installing auglabel and its dependencies into .venv" >&2
.venv/bin/pip install -q -e '.[test]'
echo "$want" > "$stamp"
