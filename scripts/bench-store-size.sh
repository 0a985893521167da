#!/usr/bin/env bash
# Disk per stored value (docs/operations.md, "Size the disk"): DEVICES fire
# pumps (default 100) each send SAMPLES samples (default 10,000) of the
# bench's four values, 10 s apart in device time, with `mosquitto_pub -l` at
# QoS 1 into `gateway run` on its embedded broker; once every value is
# stored, the gateway is stopped, started and stopped again (the inbox is
# compacted into points by then) and the size of gateway.sqlite is divided
# by the values stored. The size does not depend on the build profile:
#   scripts/bench-store-size.sh [GATEWAY_BINARY]   (default target/release/gateway)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/gateway}
devices=${DEVICES:-100}
samples=${SAMPLES:-10000}
dir=$(mktemp -d)
gw=
trap '[ -n "$gw" ] && kill "$gw" 2>/dev/null; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt=$(free_port)
http=$(free_port)
export GATEWAY_ADMIN_TOKEN=bench-store-size-0123456789
start() {
  "$bin" run --data-dir "$dir/d" --mqtt-listen "127.0.0.1:$mqtt" --http-listen "127.0.0.1:$http" >/dev/null 2>&1 &
  gw=$!
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$http/readyz" && return
    sleep 0.1
  done
  echo "the gateway did not become ready" >&2
  exit 1
}
stop() { kill -TERM "$gw"; wait "$gw" || true; gw=; }
stored() {
  curl -s -H "Authorization: Bearer $GATEWAY_ADMIN_TOKEN" "http://127.0.0.1:$http/metrics" \
    | awk '/^fm_store_values_total /{print $2}'
}

start
t0=$(($(date +%s%3N) - samples * 10000))
pubs=()
for d in $(seq 1 "$devices"); do
  awk -v t0="$t0" -v n="$samples" -v d="$d" 'BEGIN { srand(d); for (i = 1; i <= n; i++)
      printf "{\"v\":1,\"seq\":%d,\"ts\":%d,\"bdseq\":1,\"m\":{\"network_pressure_mpa\":%.3f,\"tank_level_m\":%.2f,\"start_signal\":false,\"pump_running\":false}}\n",
        i, t0 + i * 10000, 0.30 + rand() / 10, 2.4 + rand() / 5 }' \
    | mosquitto_pub -h 127.0.0.1 -p "$mqtt" -q 1 -t "fm/v1/bench/firepump/FP-$d/data" -l &
  pubs+=($!)
done
wait "${pubs[@]}"
want=$((devices * samples * 4))
for _ in $(seq 1 1200); do
  [ "$(stored)" -ge "$want" ] && break
  sleep 0.5
done
stop
start
stop
python3 - "$dir/d/gateway.sqlite" "$want" <<'PY'
import os, sqlite3, sys
db, want = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
points = c.execute("SELECT COUNT(*) FROM points").fetchone()[0]
inbox = c.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
size = os.path.getsize(db)
print(f"values sent {want}, stored {points + inbox} (points {points}, inbox {inbox})")
print(f"gateway.sqlite {size} bytes: {size / want:.1f} bytes per value, {4 * size / want:.0f} per sample of 4 values")
PY
