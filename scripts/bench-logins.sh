#!/usr/bin/env bash
# Logins from outside: N devices provisioned over the API, then each connects,
# publishes one QoS 1 sample and disconnects (mosquitto_pub, PAR at a time),
# against the release gateway with auth = "none" and auth = "devices"
# (cold: Argon2 per password; again: remembered). docs/security.md has the figures.
# Build first: cargo build --release -p gateway. Needs curl, python3, bc, mosquitto-clients.
set -euo pipefail
N=${N:-1000}; PAR=${PAR:-50}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/gateway}
TOKEN=measure-admin-token-0123
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
run() { # $1 = auth mode
  local d mq ht
  d=$(mktemp -d); mq=$(free_port); ht=$(free_port)
  printf '[mqtt]\nlisten = "127.0.0.1:%s"\nauth = "%s"\n[http]\nlisten = "127.0.0.1:%s"\n[storage]\ndata_dir = "%s/data"\n' $mq $1 $ht $d > $d/gw.toml
  GATEWAY_ADMIN_TOKEN=$TOKEN RUST_LOG=error $BIN run --config $d/gw.toml >/dev/null 2>&1 & local pid=$!
  until curl -s -o /dev/null http://127.0.0.1:$ht/healthz; do sleep 0.1; done
  : > $d/creds
  if [ $1 = devices ]; then
    local t0=$(date +%s.%N)
    for i in $(seq 1 $N); do
      curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d "{\"site\":\"m\",\"class\":\"elevator\",\"device\":\"E$i\"}" http://127.0.0.1:$ht/api/v1/devices \
        | python3 -c 'import sys,json; v=json.load(sys.stdin); print(v["username"], v["password"])' >> $d/creds
    done
    echo "provisioned $N in $(echo "$(date +%s.%N) - $t0" | bc) s (Argon2id hash per device, API)"
  else
    for i in $(seq 1 $N); do echo "m/E$i x" >> $d/creds; done
  fi
  publish() { # first pass: cold (Argon2 verify); second: remembered
    local t0=$(date +%s.%N)
    local fails
    fails=$(while read u p; do
      dev=${u#m/}
      if [ $1 = devices ]; then echo "-u $u -P $p -t fm/v1/m/elevator/$dev/data"; else echo "-t fm/v1/m/elevator/$dev/data"; fi
    done < $d/creds | xargs -P $PAR -L 1 sh -c 'mosquitto_pub -h 127.0.0.1 -p '$mq' -q 1 -m "{\"v\":1,\"seq\":1,\"ts\":1,\"m\":{\"floor\":1}}" "$@" || echo fail' _ | grep -c fail || true)
    echo "$2: $N connect+publish+disconnect in $(echo "$(date +%s.%N) - $t0" | bc) s, $fails failed"
  }
  publish $1 "auth=$1 cold"
  publish $1 "auth=$1 again"
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf $d
}
[ -n "${SKIP_NONE:-}" ] || run none   # SKIP_NONE=1: only the authenticated run
run devices
