#!/usr/bin/env bash
# The Debian package, installed and run as an operator would: builds it with
# `cargo deb`, checks its contents, `dpkg -i`s it, checks the user, the
# directories and the admin token the maintainer scripts made, verifies the
# systemd unit, starts the installed binary by hand as the fm-gateway user
# with the installed config (systemd is not PID 1 in CI's container, so the
# unit itself cannot be started) until /readyz answers 200, backs it up while
# it runs and restores that as docs/operations.md says, reinstalls it over an
# edited config (an upgrade), then removes and purges it and checks what is
# left. Prints a pass/FAIL line per check; exits 1 if any failed.
#
# Needs root (dpkg). Refuses to run where fm-gateway is already installed.
#
# PACKAGE_PROFILE (default `release`, what ships): the Cargo profile of the
# packaged binary. The test command sets `dev`: cargo-deb then packages the
# debug build the tests already made (about 10 s), where a release build of
# the gateway costs 2-5 minutes of CI's 2 cores (1 min 49 s incremental), and this test is about
# the package, not the code's speed (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PACKAGE_PROFILE:-release}
passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "pass: $what"
    passed=$((passed + 1))
  else
    echo "FAIL: $what"
    failed=$((failed + 1))
  fi
}

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/package-test.sh installs a package: run it as root" >&2
  exit 2
fi
if dpkg-query -W -f='${Status}' fm-gateway 2>/dev/null | grep -q "installed"; then
  echo "fm-gateway is installed on this machine; this test installs and purges it: remove it first" >&2
  exit 2
fi
user_was_there=false
getent passwd fm-gateway >/dev/null && user_was_there=true
data_was_there=false
[ -e /var/lib/fm-gateway ] && data_was_there=true

gateway_pid=
work=$(mktemp -d)
cleanup() {
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -KILL "$gateway_pid" 2>/dev/null || true
  fi
  if dpkg-query -W -f='${Status}' fm-gateway 2>/dev/null | grep -q "installed\|config-files"; then
    dpkg -P fm-gateway >/dev/null 2>&1 || true
  fi
  $data_was_there || rm -rf /var/lib/fm-gateway
  $user_was_there || { userdel fm-gateway 2>/dev/null || true; groupdel fm-gateway 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the package (cargo deb, profile $profile)"
started=$(date +%s)
deb=$(cargo deb -p gateway --locked --profile "$profile" --fast -o target/debian/ | tail -n 1)
echo "built $deb in $(($(date +%s) - started)) s"
check "the .deb was written" test -f "$deb"

# What is in it.
dpkg-deb -f "$deb" Package Depends >"$work/control"
dpkg-deb -c "$deb" >"$work/contents"
dpkg-deb -e "$deb" "$work/DEBIAN"
check "package name fm-gateway" grep -qx "Package: fm-gateway" "$work/control"
for path in ./usr/bin/gateway ./etc/fm-gateway/gateway.toml ./usr/lib/sysusers.d/fm-gateway.conf \
  ./usr/share/doc/fm-gateway/operations.md ./usr/share/doc/fm-gateway/configuration.md \
  ./usr/share/doc/fm-gateway/prometheus/gateway-rules.yml; do
  check "the package holds ${path#.}" grep -q " $path\$" "$work/contents"
done
check "the package holds the systemd unit" grep -Eq " \./(usr/)?lib/systemd/system/fm-gateway\.service\$" "$work/contents"
check "gateway.toml is a conffile" grep -qx "/etc/fm-gateway/gateway.toml" "$work/DEBIAN/conffiles"
check "the admin token is not in the package" bash -c "! grep -q admin-token '$work/contents'"

echo "dpkg -i"
dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; false; }
check "installed" bash -c "dpkg-query -W -f='\${Status}' fm-gateway | grep -q 'install ok installed'"
check "/usr/bin/gateway runs" /usr/bin/gateway --version
check "system user fm-gateway" bash -c '[ "$(getent passwd fm-gateway | cut -d: -f3)" -lt 1000 ]'
check "fm-gateway cannot log in" bash -c 'getent passwd fm-gateway | cut -d: -f7 | grep -Eq "/(nologin|false)$"'
check "fm-gateway is in dialout (Modbus RTU)" bash -c 'id -nG fm-gateway | tr " " "\n" | grep -qx dialout'
check "/var/lib/fm-gateway is fm-gateway's, 0700" bash -c '[ "$(stat -c %U:%a /var/lib/fm-gateway)" = fm-gateway:700 ]'
check "gateway.toml is root:fm-gateway 0640" bash -c '[ "$(stat -c %U:%G:%a /etc/fm-gateway/gateway.toml)" = root:fm-gateway:640 ]'
check "admin-token is root:fm-gateway 0640" bash -c '[ "$(stat -c %U:%G:%a /etc/fm-gateway/admin-token)" = root:fm-gateway:640 ]'
check "admin-token holds 48 hex digits" grep -Eqx '[0-9a-f]{48}' /etc/fm-gateway/admin-token
token=$(cat /etc/fm-gateway/admin-token)
check "the token was not printed at install" bash -c "! grep -q '$token' '$work/install.log'"
unit=$(ls /lib/systemd/system/fm-gateway.service /usr/lib/systemd/system/fm-gateway.service 2>/dev/null | head -n 1)
check "the unit is installed" test -n "$unit"
if command -v systemd-analyze >/dev/null; then
  # verify checks syntax, the ExecStart binary and every option's value.
  check "systemd-analyze verify fm-gateway.service" systemd-analyze verify "$unit"
  systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -n 1 | sed 's/^/  /' || true
else
  echo "skip: systemd-analyze is not installed"
fi
check "the unit runs as fm-gateway" grep -qx "User=fm-gateway" "$unit"

# Start the installed binary as the unit would, as fm-gateway, with the
# installed configuration; the ports moved to free ones by the command line.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt=$(free_port)
http=$(free_port)
(cd /var/lib/fm-gateway && exec runuser -u fm-gateway -- env GATEWAY_ADMIN_TOKEN_FILE=/etc/fm-gateway/admin-token \
  /usr/bin/gateway run --config /etc/fm-gateway/gateway.toml --data-dir /var/lib/fm-gateway \
  --mqtt-listen "127.0.0.1:$mqtt" --http-listen "127.0.0.1:$http" >"$work/gateway.out" 2>"$work/gateway.err") &
gateway_pid=$!
ready=
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/readyz")" = 200 ]; then
    ready=yes
    break
  fi
  kill -0 "$gateway_pid" 2>/dev/null || break
  sleep 0.1
done
check "the installed gateway answers /readyz with 200" test -n "$ready"
[ -n "$ready" ] || { echo "--- its stderr:"; tail -n 20 "$work/gateway.err"; }
check "the API takes the token from /etc/fm-gateway/admin-token" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $token' http://127.0.0.1:$http/api/v1/devices)\" = 200 ]"
check "the API refuses no token" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$http/api/v1/devices)\" = 401 ]"
check "the token was not printed by the gateway" bash -c "! grep -q '$token' '$work/gateway.out' '$work/gateway.err'"
check "logs into a file have no colour" bash -c "! grep -q $'\\e' '$work/gateway.err'"
check "an online backup as fm-gateway while it runs" \
  runuser -u fm-gateway -- /usr/bin/gateway backup --data-dir /var/lib/fm-gateway --to /var/lib/fm-gateway/backup.sqlite
# SIGTERM to the gateway itself (runuser's child), as systemd would send it;
# runuser then exits with the gateway's status.
gateway_child=$(pgrep -P "$gateway_pid" -x gateway || true)
kill -TERM "${gateway_child:-$gateway_pid}"
code=0
wait "$gateway_pid" || code=$?
gateway_pid=
check "SIGTERM stops it with exit 0" test "$code" -eq 0
check "its store and signing key are fm-gateway's" \
  bash -c '[ "$(stat -c %U /var/lib/fm-gateway/gateway.sqlite)" = fm-gateway ] && [ "$(stat -c %U:%a /var/lib/fm-gateway/records.key)" = fm-gateway:600 ]'

# The restore procedure of docs/operations.md, as root: the old directory
# moved aside, an empty one for fm-gateway, the backup taken above and the
# signing key; the restored files are fm-gateway's and a gateway starts on them.
mv /var/lib/fm-gateway "$work/old-data"
install -d -m 0700 -o fm-gateway -g fm-gateway /var/lib/fm-gateway
check "gateway restore as root into the package's data directory" \
  /usr/bin/gateway restore --from "$work/old-data/backup.sqlite" --data-dir /var/lib/fm-gateway \
  --key "$work/old-data/records.key"
check "the restored store, key and lock are fm-gateway's" \
  bash -c '[ "$(stat -c %U /var/lib/fm-gateway/{gateway.sqlite,records.key,gateway.lock} | sort -u)" = fm-gateway ]'
(cd /var/lib/fm-gateway && exec runuser -u fm-gateway -- env GATEWAY_ADMIN_TOKEN_FILE=/etc/fm-gateway/admin-token \
  /usr/bin/gateway run --config /etc/fm-gateway/gateway.toml --data-dir /var/lib/fm-gateway \
  --mqtt-listen "127.0.0.1:$mqtt" --http-listen "127.0.0.1:$http" >/dev/null 2>"$work/restored.err") &
gateway_pid=$!
verified=
for _ in $(seq 1 300); do
  if curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http/api/v1/records/verify" 2>/dev/null | grep -q '"ok":true'; then
    verified=yes
    break
  fi
  kill -0 "$gateway_pid" 2>/dev/null || break
  sleep 0.1
done
check "a gateway on the restored store: its record chain verifies" test -n "$verified"
[ -n "$verified" ] || tail -n 20 "$work/restored.err"
gateway_child=$(pgrep -P "$gateway_pid" -x gateway || true)
kill -TERM "${gateway_child:-$gateway_pid}"
wait "$gateway_pid" || true
gateway_pid=

# An upgrade (the same package again): the edited configuration, the token
# and the data are kept.
echo "# edited by the operator" >>/etc/fm-gateway/gateway.toml
dpkg -i --force-confold "$deb" >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log"; false; }
check "an upgrade keeps the edited gateway.toml" grep -qx "# edited by the operator" /etc/fm-gateway/gateway.toml
check "an upgrade keeps the admin token" bash -c "[ \"\$(cat /etc/fm-gateway/admin-token)\" = '$token' ]"
check "an upgrade keeps the store" test -f /var/lib/fm-gateway/gateway.sqlite

echo "dpkg -r"
dpkg -r fm-gateway >/dev/null
check "removed: /usr/bin/gateway is gone" test ! -e /usr/bin/gateway
check "removed: the unit is gone" test ! -e "$unit"
check "removed: the configuration stays until purge" test -f /etc/fm-gateway/gateway.toml
echo "dpkg -P"
dpkg -P fm-gateway >/dev/null 2>"$work/purge.log"
check "purged: /etc/fm-gateway is gone" test ! -e /etc/fm-gateway
check "purged: dpkg no longer knows it" bash -c "! dpkg-query -W fm-gateway 2>/dev/null | grep -q ."
check "purged: the data directory is kept (the record chain is evidence)" test -f /var/lib/fm-gateway/gateway.sqlite
check "purged: and says so" grep -q "/var/lib/fm-gateway" "$work/purge.log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
