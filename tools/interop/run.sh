#!/usr/bin/env bash
# Installs what the interop scenarios need (setup.sh), then runs them against an oscgate binary.
# OSCGATE = path to the binary (default: target/release/oscgate under the repo root).
# Extra arguments go to cli_scenarios.py (e.g. `--only a --only g`).
# Exits non-zero if any scenario fails; the last line printed is `N passed, M failed`.
# It does not build oscgate.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

"$HERE/setup.sh"

bin="${OSCGATE:-$ROOT/target/release/oscgate}"
case "$bin" in
    /*) ;;
    *) bin="$PWD/$bin" ;;
esac

# The scenarios bound themselves to ~60 s; this is only the last resort.
exec timeout -k 5 100 "$HERE/.venv/bin/python" "$HERE/cli_scenarios.py" --oscgate "$bin" "$@"
