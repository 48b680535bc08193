#!/usr/bin/env bash
# Set everything up, then run the main job: the whole chain on the built-in default corpus
# (clean the offline mini internet, train the tokenizer, tokenize, pretrain, sample, SFT, evals,
# report card in runs/<run>/report/report.md).
# Rerunning continues where a killed run stopped.
#
#   bash scripts/run.sh                      # runs/demo, preset cpu-tiny
#   RUN=runs/big PRESET=cpu-small bash scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${PYTHON:-python3}" -m picochat.cli speedrun --run "${RUN:-runs/demo}" --preset "${PRESET:-cpu-tiny}"
