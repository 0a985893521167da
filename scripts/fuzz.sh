#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on the stable toolchain and runs each
# for a bounded time from its committed seed corpus; fails on the first crash,
# panic, failed assertion or timeout.
#
#   scripts/fuzz.sh                       # every target, FUZZ_SECONDS (20) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh api  # one target, longer
#   scripts/fuzz.sh --build-only          # build, run nothing
#
# Targets: decode and topic (protocol/fuzz: the wire decoders and the topic
# parser), api, config and gb26875 (gateway/fuzz: the HTTP router with
# arbitrary requests, the configuration file, a fire centre's byte stream
# through the GB/T 26875.3 decoder and session). No nightly and no cargo-fuzz: the flags
# below are what `cargo fuzz` passes, minus the sanitizer (ASan needs
# nightly; the targets are safe Rust and a panic is what they look for).
# libfuzzer-sys compiles libFuzzer itself with the system's C++ compiler.
#
# What a run found stays in target/fuzz/corpus/<target> (give it back with
# FUZZ_KEEP=1 to start there next time); a crash is written to
# target/fuzz/artifacts/<target>/ and the script prints how to replay it.
# docs/testing.md says how to run longer and what to do with a finding.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
build_only=0
targets=()
for a in "$@"; do
  case "$a" in
    --build-only) build_only=1 ;;
    *) targets+=("$a") ;;
  esac
done
((${#targets[@]})) || targets=(decode topic config api gb26875)

# The host triple given explicitly keeps these flags off build scripts and
# proc macros; a target dir of its own keeps them off the main builds.
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=target/fuzz
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# opt-level 1: measured on the 2-core machine, the gateway's graph builds in
# 3m56s instead of 5m16s (SQLite's C alone 21 s instead of 66 s), and runs
# as fast (api 3,500 requests/s at either level, config 4,200 files/s).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-1}

manifest() {
  case "$1" in
    decode | topic) echo protocol/fuzz/Cargo.toml ;;
    api | config | gb26875) echo gateway/fuzz/Cargo.toml ;;
    *) echo "unknown fuzz target: $1 (decode, topic, config, api, gb26875)" >&2; exit 2 ;;
  esac
}
seeds() {
  case "$1" in
    decode | topic) echo protocol/fuzz/seeds/$1 ;;
    *) echo gateway/fuzz/seeds/$1 ;;
  esac
}

# Build each workspace once, with its targets.
declare -A bins=()
for t in "${targets[@]}"; do
  m=$(manifest "$t")
  bins[$m]+=" --bin $t"
done
for m in "${!bins[@]}"; do
  started=$(date +%s)
  # shellcheck disable=SC2086 # the --bin flags are words
  cargo build --locked --release --quiet --target "$host" --manifest-path "$m" ${bins[$m]}
  printf 'built %s in %ds\n' "${bins[$m]# }" $(($(date +%s) - started))
done
((build_only)) && exit 0

# The API target's gateway keeps its data directory here (tmpfs if there is
# one): libFuzzer exits without running destructors.
scratch=$(mktemp -d "${FUZZ_TMP:-$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}/fm-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export GW_FUZZ_TMP=$scratch

failed=()
for t in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$t
  artifacts=target/fuzz/artifacts/$t
  [ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  dict=()
  [ -f "$(dirname "$(manifest "$t")")/$t.dict" ] && dict=(-dict="$(dirname "$(manifest "$t")")/$t.dict")
  log=target/fuzz/$t.log
  printf '==> fuzzing %s for %ds\n' "$t" "$seconds"
  # New inputs go to the first corpus directory; the seeds stay as committed.
  if "target/fuzz/$host/release/$t" "$corpus" "$(seeds "$t")" "${dict[@]}" \
      -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 -max_len=8192 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -aEo 'cov: [0-9]+' "$log" | tail -1)
    printf '    %s runs, %s, corpus %d inputs, no crash\n' "${runs:-?}" "${cov:-cov: ?}" "$(find "$corpus" -type f | wc -l)"
  else
    failed+=("$t")
    { grep -aE -A30 'panicked at|ERROR: libFuzzer|==[0-9]+== ERROR|SUMMARY' "$log" || tail -40 "$log"; } | head -60
    crash=$(ls -t "$artifacts" 2>/dev/null | head -1)
    printf '\n    %s FAILED (log: %s)\n    replay: %s %s\n' "$t" "$log" \
      "target/fuzz/$host/release/$t" "${crash:+$artifacts/$crash}"
  fi
done
if ((${#failed[@]})); then
  echo "fuzzing found crashes in: ${failed[*]}"
  exit 1
fi
