#!/usr/bin/env bash
# Install signfuse and everything it needs into ./.venv (idempotent).
# torch and torchvision are pinned to a matching pair (the standard builds, which run on a
# machine without a GPU; pip never resolves an unpinned torch). Set TORCH_SPEC to choose
# another build on your machine, e.g. TORCH_SPEC='torch==2.5.1 torchvision==0.20.1'.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q -e '.[test,deepspeed,pose,serve]'
# the browser of the page's test (tests/test_serve_browser.py): Debian's chromium, driven by
# Playwright (pip, in [test]) through its executable; Playwright's own browser download is not used
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } ||
            echo "setup: apt-get could not install chromium: the browser test will fail until it is installed" >&2
    else
        echo "setup: the browser test needs Chromium: run 'sudo apt-get install chromium' (Debian/Ubuntu)" >&2
    fi
fi
echo "signfuse installed in .venv ($(.venv/bin/python -c 'import torch, torchvision, transformers; print("torch", torch.__version__, "torchvision", torchvision.__version__, "transformers", transformers.__version__)'))"
