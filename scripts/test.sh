#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what the tests need, then
# format, lints, cargo deny, tests, fuzzing, and the no_std proofs. Prints
# its wall time at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check
# The fuzz workspaces are workspaces of their own.
cargo fmt --manifest-path protocol/fuzz/Cargo.toml -- --check
cargo fmt --manifest-path gateway/fuzz/Cargo.toml -- --check

step "cargo clippy (workspace but the board crate, all targets, -D warnings)"
cargo clippy --workspace --exclude board-stm32f4 --all-targets --locked -- -D warnings

step "cargo deny (advisories offline against tools/advisory-db, licences, bans, sources; every workspace)"
# Policy in deny.toml; the advisory snapshot's date is in docs/testing.md and
# scripts/refresh-advisories.sh renews it where GitHub is reachable.
scripts/deny.sh

step "tests (cargo nextest)"
cargo nextest run --workspace --exclude board-stm32f4 --locked --profile ci

step "the end-to-end bench, smoke (seconds): loadgen against a bare subscriber, the gateway behind Mosquitto and on its embedded broker"
# The full run is scripts/bench-e2e.sh (release builds, Node-RED, 5 runs):
# docs/performance.md. This one exits non-zero if a sample, an alarm, an
# alert or a work order of the storm is lost.
cargo run --locked -q -p loadgen -- all --smoke --plain --gateway-bin target/debug/gateway
# The InfluxDB sink (VictoriaMetrics): a spooled burst drains, nothing lost.
cargo run --locked -q -p loadgen -- sink --smoke --plain --gateway-bin target/debug/gateway

step "the HIL scenario library (virtual time; JUnit in target/hil-junit.xml)"
# Every scenario of hil-tests/scenarios through the real firmware, real
# links (the embedded broker, Mosquitto, Modbus TCP and RTU over pty pairs)
# and the real gateway. Exits non-zero if any expectation does not hold.
cargo run --locked -q -p hil-tests --bin hil -- run --plain --junit target/hil-junit.xml

step "the Debian package: cargo deb, dpkg -i, the installed gateway answers /readyz, dpkg -r / -P"
# The debug build the tests made, packaged (a release build would add 2-5 min);
# systemd is not PID 1 here, so the binary is started by hand as fm-gateway
# with the installed config (docs/operations.md). Needs root, as CI is.
PACKAGE_PROFILE=dev scripts/package-test.sh

step "the console in a real browser"
# Debian's Chromium driven by playwright-core against the gateway and
# mosquitto_pub: an engineer's board (Chinese, an alert arriving live, the
# device page's charts), a contractor stepping an order on a 390 px phone, an
# auditor's search, chain check and CSV export, English, and the stream
# resuming after a restart (docs/console.md).
scripts/browser-test.sh

step "doc tests"
cargo test --workspace --exclude board-stm32f4 --doc --locked

step "fuzzing (libFuzzer on stable, ${FUZZ_SECONDS:-20} s per target: decode, topic, config, api, gb26875)"
# Builds in target/fuzz with coverage flags, runs each target from its seeds
# in protocol/fuzz/seeds and gateway/fuzz/seeds; any panic, failed assertion
# (an API answer of 500, an error naming no file, ...) or hang fails the
# command. Longer runs: docs/testing.md.
scripts/fuzz.sh

step "no_std proofs"
# 1. Build the node-side crates for a real microcontroller: any dependency that
#    pulls in std fails here. -p, never --workspace (the gateway needs std).
nostd_crates=(-p protocol -p firmware -p no-std-proof)
proofs=()
if rustup target list --installed | grep -q '^thumbv7em-none-eabihf$'; then
  cargo build --locked "${nostd_crates[@]}" --target thumbv7em-none-eabihf
  cargo build --locked -p firmware --features mqtt --target thumbv7em-none-eabihf
  # The optional `alloc` feature must stay free of std as well.
  cargo build --locked -p protocol --features alloc --target thumbv7em-none-eabihf
  proofs+=("thumbv7em-none-eabihf build")
  # The board binaries (the board crate builds only for the chip): lint, link
  # with the size profile, and report flash and RAM per class.
  cargo clippy --locked -p board-stm32f4 --target thumbv7em-none-eabihf --profile board -- -D warnings
  cargo build --locked -p board-stm32f4 --target thumbv7em-none-eabihf --profile board
  firmware/board-stm32f4/size-report.sh board
  proofs+=("board-stm32f4 linked for thumbv7em-none-eabihf")
else
  echo "thumbv7em-none-eabihf is not installed: relying on the host staticlib proof"
fi
# 2. Link them into a host staticlib with a panic handler of its own: std's
#    handler would collide with it ("duplicate lang item `panic_impl`").
cargo rustc --locked -p no-std-proof --lib --crate-type staticlib -- -C panic=abort --cfg fm_nostd_proof
proofs+=("host staticlib with its own panic handler")
printf 'no_std proofs that ran: %s\n' "$(IFS=';'; echo "${proofs[*]}")"

elapsed=$(( $(date +%s) - started ))
printf '\nall checks passed in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
