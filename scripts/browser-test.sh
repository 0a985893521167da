#!/usr/bin/env bash
# The web console in a real browser (docs/console.md): builds the gateway,
# starts it on free ports with a test compound fed by mosquitto_pub, and
# drives Debian's Chromium through playwright-core (tools/browser/) as an
# engineer, a contractor on a 390x844 phone and an auditor. Prints
# `pass NAME` / `FAIL NAME: why` per scenario; exits non-zero on a failure.
#
#   scripts/browser-test.sh                        # screenshots in target/browser-test/
#   scripts/browser-test.sh --update-screenshots   # ... in docs/img/ (the README's)
#   scripts/browser-test.sh --console-dir dashboards/console
#                           # the console's files from disk, no rebuild needed
#   scripts/browser-test.sh --keep                 # keep the gateway's log and data
set -euo pipefail
cd "$(dirname "$0")/.."

shots=target/browser-test
args=()
for a in "$@"; do
  case "$a" in
    --update-screenshots) shots=docs/img ;;
    *) args+=("$a") ;;
  esac
done

for tool in node npm chromium mosquitto_pub; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not installed: run scripts/install-test-deps.sh" >&2; exit 2; }
done

# playwright-core, exactly as tools/browser/package-lock.json says; again
# whenever the lock file changes (scripts/install-test-deps.sh does the same).
if ! cmp -s tools/browser/package-lock.json tools/browser/node_modules/.fm-installed-lock 2>/dev/null; then
  (cd tools/browser && npm ci --no-audit --no-fund --loglevel=error)
  cp tools/browser/package-lock.json tools/browser/node_modules/.fm-installed-lock
fi

cargo build --locked -q -p gateway --bin gateway
node tools/browser/console.test.mjs --gateway target/debug/gateway --screenshots "$shots" --chromium "$(command -v chromium)" ${args[@]+"${args[@]}"}
