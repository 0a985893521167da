#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages for the real
# servers the tests start, and the Rust pieces rustup will not fetch by itself
# (RUSTUP_AUTO_INSTALL=0 on these machines). Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the broker the docs' mosquitto_pub lines are tested against,
# mbpoll (a real Modbus master for the firmware's slave), and VictoriaMetrics
# (a real server for the InfluxDB v2 write API), socat (pty pairs standing in
# for RS-485 lines), aiosmtpd (a real SMTP server for the e-mail channel),
# python3 and openssl (a third party verifying the record chain), and
# Chromium (a real browser rendering the web console, headless) with
# fonts-noto-cjk (so its Chinese renders), g++ (the
# fuzz targets build libFuzzer, which is C++; scripts/fuzz.sh).
# A later issue adds PostgreSQL here.
packages=(mosquitto mosquitto-clients mbpoll victoria-metrics socat python3 python3-aiosmtpd openssl chromium fonts-noto-cjk g++)
# Node.js and npm drive Chromium in scripts/browser-test.sh: Debian's, unless
# some Node.js with npm is installed already (NodeSource's bundles npm).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
# The Debian package's test (scripts/package-test.sh): systemd (the package
# depends on it; systemd-analyze verifies the unit), curl (asks /readyz).
packages+=(systemd curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian's packages start their servers (a broker on 1883, VictoriaMetrics on
  # 8428); tests start their own on free ports.
  if command -v systemctl >/dev/null 2>&1; then
    "${sudo_cmd[@]}" systemctl disable --now mosquitto victoria-metrics >/dev/null 2>&1 || true
  fi
fi

# playwright-core for the console's browser test (scripts/browser-test.sh),
# exactly as tools/browser/package-lock.json says; again whenever it changes.
if ! cmp -s tools/browser/package-lock.json tools/browser/node_modules/.fm-installed-lock 2>/dev/null; then
  (cd tools/browser && npm ci --no-audit --no-fund --loglevel=error)
  cp tools/browser/package-lock.json tools/browser/node_modules/.fm-installed-lock
fi

# Python peers for tests (a Modbus slave not written here; Google's protobuf
# for an independent Sparkplug B encoder, gateway/tests/peers/sparkplug_codec.py),
# in a venv under target/ so nothing is installed system-wide. Pinned versions.
venv=target/test-venv
if ! "$venv/bin/python" -c 'import serial, pymodbus; assert pymodbus.__version__ == "3.16.1"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pymodbus==3.16.1 pyserial==3.5
fi
if ! "$venv/bin/python" -c 'import google.protobuf as p; assert p.__version__ == "7.36.2"' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check protobuf==7.36.2
fi

# The pinned toolchain (rust-toolchain.toml), its components, and the
# microcontroller target for the no_std proof.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$toolchain"; then
  rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy
fi
rustup component add --toolchain "$toolchain" rustfmt clippy >/dev/null 2>&1 || true
rustup target add --toolchain "$toolchain" thumbv7em-none-eabihf >/dev/null 2>&1 \
  || echo "warning: could not add thumbv7em-none-eabihf; the no_std proof falls back to a host staticlib"
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# cargo-deb (scripts/package-test.sh builds the Debian package), pinned;
# about 65 s to build on 2 cores.
cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
  cargo install --locked cargo-deb --version "$cargo_deb_version"
fi
# cargo-deny (scripts/deny.sh), pinned: scripts/deny.sh knows where this
# version looks for the advisory database. Builds with Rust >= 1.88.
cargo_deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
  cargo install --locked "cargo-deny@$cargo_deny_version"
fi
