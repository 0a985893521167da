#!/usr/bin/env bash
# Flash and RAM use of the three board binaries, from their ELF sections, as a
# Markdown table. Build first:
#   cargo build --locked -p board-stm32f4 --release --target thumbv7em-none-eabihf
# Usage: firmware/board-stm32f4/size-report.sh [profile-dir]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/${1:-release}"
ram_total=$((128 * 1024)) # memory.x: STM32F411CE
if command -v size >/dev/null; then size=size; else size=llvm-size; fi
printf '| class | flash: vector table + .text + .rodata + .data (B) | RAM: .data + .bss + .uninit (B) | left for the stack (B) |\n'
printf '|---|---:|---:|---:|\n'
for class in elevator firepump charger; do
  elf="$dir/$class"
  [[ -f "$elf" ]] || { echo "missing $elf: build it first" >&2; exit 1; }
  read -r vt text rodata data bss uninit < <("$size" -A "$elf" | awk '
    $1==".vector_table"{vt=$2} $1==".text"{t=$2} $1==".rodata"{r=$2}
    $1==".data"{d=$2} $1==".bss"{b=$2} $1==".uninit"{u=$2}
    END{print vt+0, t+0, r+0, d+0, b+0, u+0}')
  flash=$((vt + text + rodata + data))
  ram=$((data + bss + uninit))
  printf '| %s | %d (%d + %d + %d + %d) | %d (%d + %d + %d) | %d |\n' \
    "$class" "$flash" "$vt" "$text" "$rodata" "$data" "$ram" "$data" "$bss" "$uninit" $((ram_total - ram))
done
