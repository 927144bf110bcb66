#!/usr/bin/env bash
# Install signfuse and everything it needs into ./.venv (idempotent).
# torch is pinned to a release whose CPU wheel lies on this machine's disk; set
# TORCH_SPEC (e.g. TORCH_SPEC='torch==2.5.1') to choose another build on your machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e '.[test,deepspeed]'
echo "signfuse installed in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
