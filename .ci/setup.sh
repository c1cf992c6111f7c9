#!/usr/bin/env bash
# Set up ex4d on a fresh Debian machine (Python 3.11, no GPU). Idempotent: re-running is cheap.
#
#   bash .ci/setup.sh demo   # the engine + CLI + server + depth in .venv (`ex4d demo`, recon, serve with draft)
#   bash .ci/setup.sh test   # + server, depth, generation, cluster (Ray) extras and the Blender 4.2/4.5/5.0 test venvs
set -euo pipefail
mode="${1:-demo}"
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# System libraries: EGL + Mesa for the licence-clean OpenGL renderer (llvmpipe without a GPU),
# and the X/GL client libraries the bpy wheels link against (headless; no display is opened).
APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri"
if [ "$mode" = test ]; then
  APT_PACKAGES="$APT_PACKAGES libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libgl1 libglx-mesa0"
fi
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# The engine venv. torch is pinned to the CPU wheel: an unpinned torch pulls GBs of CUDA.
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
$PIP install "torch==2.13.0"
if [ "$mode" = test ]; then
  # torch and torchvision pinned on one line, or pip may replace the CPU torch with a CUDA one
  $PIP install -e ".[dev,server,depth,generate,cluster]" "torch==2.13.0" "torchvision==0.28.0"
  # Blender versions the add-on is tested on, each in its own venv (bpy wheels are CPython 3.11 only).
  for spec in "42 bpy==4.2.23" "45 bpy==4.5.15" "50 bpy==5.0.1"; do
    set -- $spec
    venv=".venv-bpy$1"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip --disable-pip-version-check -q install "$2" "numpy<2" requests pytest
  done
else
  # server + depth extras: what README shows next (`ex4d serve`, `ex4d recon --depth_backend`) runs too
  $PIP install -e ".[server,depth]" "torch==2.13.0"
fi
echo "ex4d set up ($mode): .venv/bin/ex4d"
