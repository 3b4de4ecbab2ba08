#!/usr/bin/env bash
# Make the separate virtualenv that the optimum peers of the HF speed race run in.
#
#     bash edgevlm/scripts/optimum_env.sh VENV_DIR      (e.g. /work/runs/optimum-venv)
#
# Why a venv of its own: optimum-onnx 0.1.0 (the ONNX Runtime half of optimum since
# optimum 2.0 moved it out) pins transformers<4.58, while edgevlm's own venv has
# transformers 5.x. The race coordinator (edgevlm/scripts/hf_race.py) starts each peer with
# its own python, so the two never share a process.
#
# Installs: torch==2.13.0 (pinned: here that is the local CPU wheel; an unpinned torch pulls
# a multi-GB CUDA build), transformers<4.58, optimum-onnx[onnxruntime]==0.1.0 (brings optimum
# ~=2.1, onnx, onnxruntime), Pillow (ViTImageProcessor), safetensors. Re-running on an
# existing venv only installs what is missing. Exits non-zero, saying which step failed.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash $0 VENV_DIR" >&2
  exit 2
fi
VENV=$1
PYTHON=${PYTHON:-python3}

fail() {
  echo "optimum_env.sh: FAILED: $*" >&2
  exit 1
}

step() {
  # step "what" command...: run it, and on failure say what could not be done
  local what=$1
  shift
  echo "optimum_env.sh: $what" >&2
  "$@" || fail "$what (command: $*)"
}

command -v "$PYTHON" >/dev/null 2>&1 || fail "no $PYTHON on PATH (set PYTHON=/path/to/python3.10+)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || fail "$PYTHON is older than 3.10"

if [ ! -x "$VENV/bin/python" ]; then
  step "creating the venv at $VENV" "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)

step "upgrading pip" "${PIP[@]}" install --upgrade pip
# torch first and pinned, so nothing later can pull a CUDA build as a dependency.
step "installing torch==2.13.0 (CPU)" "${PIP[@]}" install torch==2.13.0
step "installing transformers<4.58 and optimum-onnx[onnxruntime]==0.1.0" \
  "${PIP[@]}" install torch==2.13.0 'transformers<4.58' 'optimum-onnx[onnxruntime]==0.1.0' pillow safetensors

# Prove the venv can do what the race asks of it, not just that pip said yes.
step "checking the imports" "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import onnxruntime
import torch
import transformers
from optimum.onnxruntime import AutoQuantizationConfig, ORTModelForVision2Seq, ORTQuantizer  # noqa: F401
from optimum.exporters.onnx import main_export  # noqa: F401
from transformers import ViTImageProcessor  # noqa: F401  (needs Pillow)

assert torch.__version__.startswith("2.13.0"), torch.__version__
major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
assert (major, minor) < (4, 58), transformers.__version__
assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("optimum venv ok:", ", ".join(f"{p} {md.version(p)}" for p in
      ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")))
EOF
