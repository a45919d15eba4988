#!/usr/bin/env bash
# make setup: idempotent. Installs missing system packages (Debian, as root), creates .venv and installs
# the project with all extras. Where it cannot install, it says exactly what to install and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

say() { printf '[setup] %s\n' "$*"; }

# --- system packages ---------------------------------------------------------------------------------
missing=()
pg_initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_initdb" ] || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser build).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
# Wanted, not required: Chinese glyphs, so the browser tests' screenshots of the zh-CN UI are readable.
optional=()
{ command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh family 2>/dev/null | grep -q .; } || optional+=(fonts-wqy-microhei)

can_apt=0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then can_apt=1; fi
if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -gt 0 ] && [ $can_apt = 0 ]; then
  say "optional: ${optional[*]} (CJK font for readable screenshots of the zh-CN dashboard)"
  optional=()
fi
missing+=("${optional[@]}")

if [ ${#missing[@]} -gt 0 ]; then
  if [ $can_apt = 1 ]; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps package scripts from starting the system-wide services: we run private ones.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.telemed
    chmod +x /usr/sbin/policy-rc.d.telemed
    if [ ! -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d.telemed /usr/sbin/policy-rc.d; added_policy=1; fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "${added_policy:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.telemed
  else
    say "missing system packages: ${missing[*]}"
    say "install them with: sudo apt-get install ${missing[*]}   (Debian/Ubuntu; elsewhere the equivalent packages)"
    exit 1
  fi
fi

# --- Python ------------------------------------------------------------------------------------------
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  say "Python >= 3.11 is required; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11"
  exit 1
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  say "installing telemed with all extras into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install --quiet -e '.[all]'
  touch "$STAMP"
fi
say "ready"
