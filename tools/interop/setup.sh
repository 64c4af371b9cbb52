#!/usr/bin/env bash
# Installs what tools/interop/ needs on Debian 12: from apt liblo-tools (oscsend, oscdump,
# oscsendfile), nodejs + npm, supercollider-language (sclang), puredata-core (pd) and chromium,
# without recommends; a Python
# venv at tools/interop/.venv with a pinned python-osc; npm `osc` at the exact version in
# package.json / package-lock.json, under tools/interop/node_modules. Safe to run repeatedly:
# when everything is already there it only runs a few quick checks and touches nothing.
# It does not build oscgate and does not install anything outside apt, this venv and
# node_modules.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
VPY="$VENV/bin/python"
PYTHON_OSC_VERSION="1.10.2"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

apt_install() {
    # Refresh the package lists only when there are none or the first install attempt fails.
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
    fi
    if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"; then
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
    fi
}

# --- system packages -------------------------------------------------------------------
missing=()
if ! command -v oscsend >/dev/null 2>&1 || ! command -v oscdump >/dev/null 2>&1 \
    || ! command -v oscsendfile >/dev/null 2>&1; then
    missing+=(liblo-tools)
fi
# `ip` and `unshare` are only used by the liblo multicast scenario (it runs in a private
# network namespace); util-linux (unshare) is always present on Debian.
if ! command -v ip >/dev/null 2>&1; then
    missing+=(iproute2)
fi
# router_scenarios.py: osc.js runs on node; SuperCollider's language alone (no server, no IDE).
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi
if ! command -v sclang >/dev/null 2>&1; then
    missing+=(supercollider-language)
fi
# oschat_scenarios.py: Pure Data without GUI or externals ([oscformat] and [netsend -u -b] are
# part of vanilla Pd).
if ! command -v pd >/dev/null 2>&1; then
    missing+=(puredata-core)
fi
# browser_scenarios.py: Debian's Chromium, run headless and driven over its DevTools pipe by
# the Python standard library (no chromedriver, no npm package).
if ! command -v chromium >/dev/null 2>&1; then
    missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
fi

# --- Python venv with python-osc -------------------------------------------------------
venv_ok() {
    [ -x "$VPY" ] && "$VPY" - "$PYTHON_OSC_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib import metadata
sys.exit(0 if metadata.version("python-osc") == sys.argv[1] else 1)
PYEOF
}

if ! venv_ok; then
    base="${PYTHON:-}"
    if [ -z "$base" ]; then
        if [ -x /usr/bin/python3 ]; then base=/usr/bin/python3; else base="$(command -v python3 || true)"; fi
    fi
    if [ -z "$base" ]; then
        apt_install python3 python3-venv
        base=/usr/bin/python3
    fi
    # A venv whose interpreter no longer runs is rebuilt from scratch.
    if [ -e "$VENV" ] && ! { [ -x "$VPY" ] && "$VPY" -c 'pass' >/dev/null 2>&1; }; then
        rm -rf "$VENV"
    fi
    if [ ! -x "$VPY" ]; then
        echo "setup: creating $VENV with $base" >&2
        if ! "$base" -m venv "$VENV" >/dev/null 2>&1; then
            # Debian's python3 needs python3-venv (ensurepip) to create venvs.
            rm -rf "$VENV"
            apt_install python3-venv
            "$base" -m venv "$VENV"
        fi
    fi
    echo "setup: installing python-osc==$PYTHON_OSC_VERSION" >&2
    "$VPY" -m pip install -q --disable-pip-version-check "python-osc==$PYTHON_OSC_VERSION"
    venv_ok || { echo "setup: python-osc $PYTHON_OSC_VERSION is not importable from $VENV" >&2; exit 1; }
fi

# --- npm osc under tools/interop/node_modules ------------------------------------------
# The version is the exact one package.json names (package-lock.json pins the rest).
npm_osc_ok() {
    [ -f "$HERE/node_modules/osc/package.json" ] && node -e '
        const want = require(process.argv[1] + "/package.json").dependencies.osc;
        const have = require(process.argv[1] + "/node_modules/osc/package.json").version;
        process.exit(have === want ? 0 : 1);
    ' "$HERE" >/dev/null 2>&1
}

if ! npm_osc_ok; then
    echo "setup: installing npm osc (package-lock.json) into $HERE/node_modules" >&2
    # `npm ci` installs exactly what package-lock.json pins; osc's optional serialport (a native
    # build) is not needed for TCP.
    (cd "$HERE" && npm ci --omit=optional --no-audit --no-fund --loglevel=error >&2)
    npm_osc_ok || { echo "setup: npm osc from package.json is not installed in $HERE/node_modules" >&2; exit 1; }
fi
