#!/usr/bin/env bash
# One-time set-up of a fresh machine: virtual environment, pinned CPU torch, qckit with its extras,
# the Jupyter kernel, the offline models, and (where apt-get is allowed) Apertium and Chromium.
# Safe to run again: every part skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
# CPU build, pinned: an unpinned torch pulls several GB of CUDA libraries.
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

log() { printf '\n== %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
log "installing $TORCH_SPEC (CPU) and qckit[ml,lab,dev]"
$PIP install -q "$TORCH_SPEC"
# The constraint keeps every later resolution on the torch just installed.
echo "$TORCH_SPEC" > "$VENV/torch-constraint.txt"
$PIP install -q -c "$VENV/torch-constraint.txt" -e ".[ml,lab,dev]"

log "registering the Jupyter kernel 'qckit' inside the environment"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name qckit --display-name "Python (qckit)" >/dev/null

# System packages: Apertium (offline MT, step 02) and Chromium (headless report test).
APT_PACKAGES="apertium cg3 apertium-spa-ita apertium-eng-spa apertium-es-pt apertium-fr-es chromium"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; }; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    log "installing system packages:$missing"
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
      echo "warning: apt-get could not install:$missing"
      echo "  translation with Apertium (step 02) and the browser test of the report need them; see README"
    fi
  else
    echo "note: cannot use apt-get here; install these yourself for the steps that need them:$missing"
    echo "  apertium*: translation step 02 (backend 'apertium'); chromium: the headless report test"
  fi
fi

log "materialising the offline models (multilingual-e5-small, gemma-3-270m) into the qckit cache"
"$VENV/bin/qckit" models prepare

touch "$VENV/.qckit-setup-done"
log "set-up complete"
