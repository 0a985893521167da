#!/usr/bin/env bash
# The end-to-end benchmark of issue 13, one command: builds the release
# gateway and loadgen, installs Node-RED 4 from npm into target/node-red if it
# is missing, and runs `loadgen all` against the four targets (a bare
# subscriber on Mosquitto, the gateway behind Mosquitto, the gateway on its
# embedded broker, Node-RED with tools/loadgen/node-red/flows.json), 5 runs
# each, printing the table. Arguments go to `loadgen all`, e.g.
#   scripts/bench-e2e.sh --runs 1 --messages 50000
#   scripts/bench-e2e.sh --smoke                       # seconds; non-zero exit on loss
#   scripts/bench-e2e.sh --json target/bench-e2e.json --plot target/bench-e2e.svg
# The InfluxDB sink against VictoriaMetrics alone is its own command:
#   target/release/loadgen sink --gateway-bin target/release/gateway --messages 1000000
# Needs mosquitto and mosquitto-clients (scripts/install-test-deps.sh) and,
# for Node-RED, Node.js 18+ with npm. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --release -p gateway --bin gateway
cargo build --locked --release -p loadgen

smoke=0
for a in "$@"; do [[ $a == --smoke ]] && smoke=1; done
node_red=target/node-red
if [[ $smoke == 0 && ! -f $node_red/node_modules/node-red/red.js ]]; then
  if command -v npm >/dev/null; then
    echo "installing node-red@4 into $node_red" >&2
    mkdir -p "$node_red"
    npm install --prefix "$node_red" --no-audit --no-fund node-red@4 >&2
  else
    echo "npm is not installed: Node-RED cannot be measured (pass --targets without node-red)" >&2
  fi
fi

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit with uncommitted changes"; fi
exec target/release/loadgen all --node-red "$node_red" --gateway-bin target/release/gateway \
  --label "$commit on $(nproc) cores" "$@"
