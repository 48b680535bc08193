#!/usr/bin/env bash
# Install what the web UI's browser test needs: Debian's chromium and chromium-driver (apt) and
# the selenium Python package. Idempotent: a second run installs nothing. Tolerant: without root
# or network it says what is missing and exits 0, and the browser test skips with that reason.
set -uo pipefail
PY="${PYTHON:-python3}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  fi
  echo "install_browser: apt-get install chromium chromium-driver"
  if ! { $SUDO apt-get update -qq && \
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
           chromium chromium-driver fonts-dejavu-core >/dev/null; }; then
    echo "install_browser: could not install chromium (need root and the Debian mirror); the browser test will skip"
  fi
fi
if ! "$PY" -c "import selenium" >/dev/null 2>&1; then
  echo "install_browser: pip install selenium"
  "$PY" -m pip install -q "selenium>=4.10" || echo "install_browser: could not install selenium"
fi
command -v chromium >/dev/null 2>&1 && echo "install_browser: $(chromium --version 2>/dev/null | head -1)"
exit 0
