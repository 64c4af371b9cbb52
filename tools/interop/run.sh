#!/usr/bin/env bash
# Installs what the interop scenarios need (setup.sh), then runs them against an oscgate binary:
# cli_scenarios.py (`oscgate send` / `dump`), then messenger_scenarios.py (`oscgate run`, the
# Messenger gateway, under both drivers), then router_scenarios.py (`oscgate run`, the
# tcposcrouter front door, under both drivers), then oschat_scenarios.py (`oscgate run`, the
# OSChat node on loopback, under both drivers), then browser_scenarios.py (`oscgate run`'s
# HTTP edge, the status page and the WebSocket demo, in headless Chromium, under both drivers).
# OSCGATE = path to the binary (default: target/release/oscgate under the repo root).
# Extra arguments go to every script (e.g. `--only a --only m2 --only r3 --only o1 --only b1`;
# each runs only its own ids: a..h for the CLI, m1..m5 or m1/mio, m1/uring for the gateway, r1,
# r2, r2-file, r3, r4 or r1/mio, r1/uring for the router, o1..o5 or o1/mio, o1/uring for OSChat,
# b1, b2 or b1/mio, b1/uring for the browser).
# Exits non-zero if any scenario of any script fails; the last line printed is
# `N passed, M failed` over all five. It does not build oscgate.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

# One timeout bounds the five scripts: the first invocation installs, then runs itself again
# under `timeout`. Each script bounds itself (SIGALRM at 80, 80, 150, 80 and 75 s; a normal run
# of all five takes well under a minute); this is only the last resort.
if [ "${OSCGATE_INTEROP_BOUNDED:-}" != 1 ]; then
    "$HERE/setup.sh"
    export OSCGATE_INTEROP_BOUNDED=1
    exec timeout -k 5 480 "${BASH_SOURCE[0]}" "$@"
fi

bin="${OSCGATE:-$ROOT/target/release/oscgate}"
case "$bin" in
    /*) ;;
    *) bin="$PWD/$bin" ;;
esac

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
passed=0
failed=0
for script in cli_scenarios.py messenger_scenarios.py router_scenarios.py oschat_scenarios.py \
    browser_scenarios.py; do
    echo "== $script"
    set +e
    "$HERE/.venv/bin/python" "$HERE/$script" --oscgate "$bin" "$@" | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    last="$(tail -n 1 "$log")"
    if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p="${BASH_REMATCH[1]}"
        f="${BASH_REMATCH[2]}"
    else
        # The script died before its summary: count that as one failure.
        p=0
        f=1
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
