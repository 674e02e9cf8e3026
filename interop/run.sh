#!/usr/bin/env bash
# Interop harness: runs the official Azure IoT Node SDKs against a real dpsd.
#
#   bash interop/run.sh DPSD_BINARY [SCRIPT.js ...]
#
# Starts DPSD_BINARY with a throw-away config (memory storage, dev CA, one id
# scope with two hubs, HTTPS and MQTT listening on 127.0.0.1 only), runs each
# interop script (default: service-crud.js device-http.js device-mqtt.js
# device-x509.js) with
# NODE_EXTRA_CA_CERTS pointing at dpsd's dev CA, checks that dpsd stops cleanly
# on SIGTERM, and ends with
#
#   interop: N passed, M failed
#
# exiting non-zero when M > 0 (or on a usage/setup error).
#
# Environment:
#   DPS_INTEROP_PORT            TLS port for dpsd (default: first free port from 18443)
#   DPS_INTEROP_MQTT_PORT       MQTT (TLS) port for dpsd (default: first free port from 18883)
#   DPS_INTEROP_SCRIPT_TIMEOUT  seconds per script (default 120)
#   DPS_INTEROP_START_TIMEOUT   seconds to wait for dpsd to listen (default 30)
#   DPS_INTEROP_KEEP=1          keep the temp dir (config, data, dpsd log)
#   RUST_LOG                    passed to dpsd (default: info)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi

dpsd="$1"
shift
[[ "$dpsd" == /* ]] || dpsd="$PWD/$dpsd"
if [[ ! -f "$dpsd" || ! -x "$dpsd" ]]; then
  echo "interop: dpsd binary not found or not executable: $dpsd" >&2
  exit 2
fi

if [[ $# -gt 0 ]]; then
  scripts=("$@")
else
  scripts=(service-crud.js device-http.js device-mqtt.js device-x509.js)
fi
for s in "${scripts[@]}"; do
  if [[ ! -f "$here/$s" ]]; then
    echo "interop: no such script: $here/$s" >&2
    exit 2
  fi
done

for tool in node npm timeout; do
  command -v "$tool" >/dev/null 2>&1 || { echo "interop: '$tool' not found on PATH" >&2; exit 2; }
done

script_timeout="${DPS_INTEROP_SCRIPT_TIMEOUT:-120}"
start_timeout="${DPS_INTEROP_START_TIMEOUT:-30}"

# ---------------------------------------------------------------------------
# results bookkeeping
# ---------------------------------------------------------------------------
passed=0
failed=0
results=()
record() { # record NAME pass|fail [note]
  if [[ "$2" == pass ]]; then
    passed=$((passed + 1))
    results+=("PASS $1${3:+ ($3)}")
  else
    failed=$((failed + 1))
    results+=("FAIL $1${3:+ ($3)}")
  fi
}

summary() {
  echo
  echo "interop: results"
  local r
  for r in "${results[@]}"; do echo "  $r"; done
  echo "interop: ${passed} passed, ${failed} failed"
}

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
port_open() { # does something accept TCP connections on 127.0.0.1:$1 ?
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

work=""
dpsd_pid=""
log=""
show_log=0
log_printed=0

print_log() {
  [[ -n "$log" && -f "$log" ]] || return 0
  ((log_printed == 0)) || return 0
  log_printed=1
  local lines
  lines=$(wc -l <"$log")
  echo
  if ((lines > 400)); then
    echo "----- dpsd log: last 400 of $lines lines ($log) -----"
    tail -n 400 "$log"
  else
    echo "----- dpsd log ($log) -----"
    cat "$log"
  fi
  echo "----- end of dpsd log -----"
}

dpsd_running() {
  [[ -n "$dpsd_pid" ]] && kill -0 "$dpsd_pid" 2>/dev/null
}

# Send SIGTERM and wait up to $1 seconds; sets stop_rc (exit status) and
# stop_how (exited|killed). Falls back to SIGKILL.
stop_dpsd() {
  local grace="$1" i
  stop_rc=0
  stop_how=exited
  [[ -n "$dpsd_pid" ]] || return 0
  if dpsd_running; then
    kill -TERM "$dpsd_pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      dpsd_running || break
      sleep 0.1
    done
    if dpsd_running; then
      stop_how=killed
      kill -KILL "$dpsd_pid" 2>/dev/null || true
    fi
  fi
  wait "$dpsd_pid" 2>/dev/null || stop_rc=$?
  dpsd_pid=""
}

# shellcheck disable=SC2317  # invoked via trap
on_exit() {
  local rc=$?
  trap - EXIT
  if [[ -n "$dpsd_pid" ]]; then
    stop_dpsd 5 || true
  fi
  if ((show_log)) || ((rc != 0)); then
    print_log
  fi
  if [[ -n "$work" && -d "$work" ]]; then
    if [[ "${DPS_INTEROP_KEEP:-0}" == 1 ]]; then
      echo "interop: kept $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail_all_scripts() { # mark every script as failed (they could not run)
  local s
  for s in "${scripts[@]}"; do record "$s" fail "not run: $1"; done
}

# ---------------------------------------------------------------------------
# port
# ---------------------------------------------------------------------------
if [[ -n "${DPS_INTEROP_PORT:-}" ]]; then
  port="$DPS_INTEROP_PORT"
  if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "interop: DPS_INTEROP_PORT is not a port number: $port" >&2
    exit 2
  fi
  if port_open "$port"; then
    echo "interop: 127.0.0.1:$port is already in use (DPS_INTEROP_PORT); refusing to test whatever listens there" >&2
    exit 2
  fi
else
  port=18443
  while port_open "$port"; do
    port=$((port + 1))
    if ((port > 18542)); then
      echo "interop: no free port in 18443-18542" >&2
      exit 2
    fi
  done
fi

if [[ -n "${DPS_INTEROP_MQTT_PORT:-}" ]]; then
  mqtt_port="$DPS_INTEROP_MQTT_PORT"
  if ! [[ "$mqtt_port" =~ ^[0-9]+$ ]] || ((mqtt_port < 1 || mqtt_port > 65535)) || ((mqtt_port == port)); then
    echo "interop: DPS_INTEROP_MQTT_PORT is not a free port number other than $port: $mqtt_port" >&2
    exit 2
  fi
  if port_open "$mqtt_port"; then
    echo "interop: 127.0.0.1:$mqtt_port is already in use (DPS_INTEROP_MQTT_PORT); refusing to test whatever listens there" >&2
    exit 2
  fi
else
  mqtt_port=18883
  while port_open "$mqtt_port" || ((mqtt_port == port)); do
    mqtt_port=$((mqtt_port + 1))
    if ((mqtt_port > 18982)); then
      echo "interop: no free port in 18883-18982" >&2
      exit 2
    fi
  done
fi

# ---------------------------------------------------------------------------
# npm dependencies (official SDKs, pinned in package-lock.json)
# ---------------------------------------------------------------------------
if [[ ! -d "$here/node_modules" || ! -f "$here/node_modules/.package-lock.json" ||
  "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  echo "interop: installing npm dependencies (npm ci)"
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund)
fi

# ---------------------------------------------------------------------------
# config + start dpsd
# ---------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/dps-interop.XXXXXX")"
data="$work/data"
mkdir -p "$data"
config="$work/dpsd.toml"
pki="$work/x509"
# The X.509 test PKI (Node crypto only); its root is the scope's verified CA.
node "$here/x509-pki.js" "$pki"
log="$work/dpsd.log"
ca="$data/dev-ca.pem"

id_scope="0ne00000001"
policy_name="provisioningserviceowner"
policy_key="dGVzdC1rZXktc2VydmljZS0wMTIzNDU2Nzg5YWJjZGU="
hubs="hub-a.example.net,hub-b.example.net"

cat >"$config" <<EOF
[listen]
https = "127.0.0.1:${port}"
mqtt = "127.0.0.1:${mqtt_port}"

[storage]
kind = "memory"
data_dir = "${data}"

[[scope]]
id_scope = "${id_scope}"
service_host_name = "localhost"
allocation_policy = "hashed"

[[scope.hub]]
host_name = "hub-a.example.net"
allocation_weight = 1
apply_allocation_policy = true

[[scope.hub]]
host_name = "hub-b.example.net"

[[scope.policy]]
name = "${policy_name}"
primary_key = "${policy_key}"
rights = ["ServiceConfig", "EnrollmentRead", "EnrollmentWrite", "RegistrationStatusRead", "RegistrationStatusWrite"]

[[scope.ca]]
name = "interop-root"
pem = "${pki}/root.pem"
verified = true
EOF

echo "interop: starting $dpsd --config $config (https 127.0.0.1:$port, mqtt 127.0.0.1:$mqtt_port)"
RUST_LOG="${RUST_LOG:-info}" "$dpsd" --config "$config" >"$log" 2>&1 </dev/null &
dpsd_pid=$!

ready=0
why=""
deadline=$((SECONDS + start_timeout))
while :; do
  if ! dpsd_running; then
    st=0
    wait "$dpsd_pid" 2>/dev/null || st=$?
    dpsd_pid=""
    why="dpsd exited with status $st before listening"
    break
  fi
  if port_open "$port" && port_open "$mqtt_port"; then
    ready=1
    break
  fi
  if ((SECONDS >= deadline)); then
    why="dpsd did not accept TCP connections on 127.0.0.1:$port and 127.0.0.1:$mqtt_port within ${start_timeout} s"
    break
  fi
  sleep 0.2
done

if ((ready)) && [[ ! -s "$ca" ]]; then
  ready=0
  why="dpsd is listening but wrote no dev CA at $ca"
fi

if ((!ready)); then
  echo "interop: $why" >&2
  fail_all_scripts "$why"
  record dpsd-sigterm fail "not run"
  print_log
  summary
  exit 1
fi
echo "interop: dpsd (pid $dpsd_pid) is listening on 127.0.0.1:$port (https) and 127.0.0.1:$mqtt_port (mqtt); dev CA $ca"

# ---------------------------------------------------------------------------
# scripts
# ---------------------------------------------------------------------------
export DPS_HOST=localhost
export DPS_CONNECT_HOST=127.0.0.1
export DPS_PORT="$port"
export DPS_MQTT_PORT="$mqtt_port"
export DPS_ID_SCOPE="$id_scope"
export DPS_POLICY_NAME="$policy_name"
export DPS_POLICY_KEY="$policy_key"
export DPS_HUBS="$hubs"
export NODE_EXTRA_CA_CERTS="$ca"
export DPS_X509_DIR="$pki"

for s in "${scripts[@]}"; do
  if ! dpsd_running; then
    record "$s" fail "not run: dpsd is no longer running"
    show_log=1
    continue
  fi
  echo
  echo "=== $s"
  rc=0
  timeout --kill-after=10 "$script_timeout" node "$here/$s" || rc=$?
  if ((rc == 0)); then
    record "$s" pass
  elif ((rc == 124 || rc == 137)); then
    record "$s" fail "timed out after ${script_timeout} s"
    show_log=1
  else
    record "$s" fail "exit status $rc"
    show_log=1
  fi
  if ! dpsd_running; then
    echo "interop: dpsd exited during $s" >&2
    show_log=1
  fi
done

# ---------------------------------------------------------------------------
# clean shutdown on SIGTERM
# ---------------------------------------------------------------------------
if dpsd_running; then
  stop_dpsd 10
  if [[ "$stop_how" == killed ]]; then
    record dpsd-sigterm fail "still running 10 s after SIGTERM; killed"
    show_log=1
  elif ((stop_rc != 0)); then
    record dpsd-sigterm fail "exit status $stop_rc after SIGTERM"
    show_log=1
  else
    record dpsd-sigterm pass
  fi
else
  record dpsd-sigterm fail "dpsd was not running at the end"
  show_log=1
fi

if ((show_log)); then
  print_log
fi
summary
if ((failed > 0)); then
  exit 1
fi
exit 0
