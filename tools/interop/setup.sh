#!/usr/bin/env bash
# Installs what tools/interop/ needs on Debian 12: liblo-tools (oscsend, oscdump) from apt and a
# Python venv at tools/interop/.venv with a pinned python-osc. Safe to run repeatedly: when
# everything is already there it only runs a few quick checks and touches nothing.
# It does not build oscgate and does not install anything outside apt and this venv.
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
    if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
    fi
    if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"; then
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
    fi
}

# --- system packages -------------------------------------------------------------------
missing=()
if ! command -v oscsend >/dev/null 2>&1 || ! command -v oscdump >/dev/null 2>&1; then
    missing+=(liblo-tools)
fi
# `ip` and `unshare` are only used by the liblo multicast scenario (it runs in a private
# network namespace); util-linux (unshare) is always present on Debian.
if ! command -v ip >/dev/null 2>&1; then
    missing+=(iproute2)
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
