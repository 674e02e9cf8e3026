#!/usr/bin/env bash
# Reproduces the `dps load` table of docs/performance.md: starts dpsd (release build) once per
# store on free local ports with a fresh data directory or PostgreSQL schema, runs each row
# with `--baseline` (a minimal server on the same stack, measured in the same run) and prints
# one line per row: rates, the ratio and the latency percentiles, plus the load average.
#
#   cargo build --release -p dps -p dpsd
#   scripts/load-table.sh [SECONDS_PER_PASS] [ROW_FILTER]
#
# DPS_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres) adds PostgreSQL rows.
# Everything binds 127.0.0.1 and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
FILTER=${2:-}
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d /tmp/dps-load-table.XXXXXX)
KEY=$(head -c 32 /dev/urandom | base64)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

start_dpsd() { # store
    [ -n "$PID" ] && { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
    local store=$1 dir="$WORK/$1-$RANDOM"
    mkdir -p "$dir"
    cat > "$dir/dpsd.toml" <<TOML
[listen]
https = "127.0.0.1:0"
mqtt = "127.0.0.1:0"
[storage]
kind = "$store"
data_dir = "$dir/data"
url = "${DPS_TEST_DATABASE_URL:-}"
schema = "load_table_$$_$RANDOM"
[service]
retry_after_secs = 0
[[scope]]
id_scope = "0ne00000A01"
service_host_name = "localhost"
[[scope.hub]]
host_name = "hub-a.example.net"
[[scope.policy]]
name = "provisioningserviceowner"
primary_key = "$KEY"
rights = ["ServiceConfig", "EnrollmentRead", "EnrollmentWrite", "RegistrationStatusRead", "RegistrationStatusWrite"]
TOML
    "$BIN/dpsd" --config "$dir/dpsd.toml" --log warn > "$dir/out" 2>&1 &
    PID=$!
    for _ in $(seq 100); do grep -q "trust root" "$dir/out" 2>/dev/null && break; sleep 0.2; done
    HTTPS=$(grep -o 'https://127.0.0.1:[0-9]*' "$dir/out" | head -1 | sed 's#https://##')
    MQTT=$(grep -o 'mqtts://127.0.0.1:[0-9]*' "$dir/out" | head -1 | sed 's#mqtts://##')
    export DPS_CA
    DPS_CA=$(sed -n 's/.*trust root (dev CA): //p' "$dir/out" | head -1)
    export DPS_CONNECTION_STRING="HostName=$HTTPS;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=$KEY"
}

row() { # name, dps load arguments...
    local name=$1; shift
    [ -n "$FILTER" ] && [[ "$name" != *$FILTER* ]] && return 0
    local load out
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$("$BIN/dps" load --scope 0ne00000A01 --baseline --duration "$SECS" --json "$@" 2>/dev/null) || {
        echo "$name: dps load failed"; return 0; }
    python3 - "$name" "$load" "$out" "$WORK/last_rate" <<'PY'
import json, sys
name, load, raw, last = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
r = json.loads(raw)
b = r.get("baseline", {})
passes = r.get("passes", [])
if passes:
    open(last, "w").write(str(int(passes[-1].get("per_second") or 0)))
for i, p in enumerate(passes):
    reg = p.get("register_us") or {}
    prov = p.get("provisioning_us") or {}
    print(f"{name} pass{i+1}: {p.get('per_second')}/s ok={p.get('ok')} failed={p.get('failed')} "
          f"baseline={b.get('per_second')}/s ratio={p.get('ratio_to_baseline')} "
          f"register p50/p99={reg.get('p50')}/{reg.get('p99')}us "
          f"prov p99={prov.get('p99')}us "
          f"baseline p50/p99={(b.get('provisioning_us') or {}).get('p50')}/{(b.get('provisioning_us') or {}).get('p99')}us "
          f"load={load}")
PY
}

# "first": every registration is a device's first (the pass ends at --duration, before the
# 20,000 devices run out). "again": 2,000 of those devices register again and again.
many="--count 100000000"
ka="--connections keep-alive"
start_dpsd memory
row "memory https new individual first" --host "$HTTPS" --devices 20000 --prefix ni
row "memory https new individual again" --host "$HTTPS" --devices 2000 $many --prefix ni --no-setup
row "memory https new group1 first" --host "$HTTPS" --devices 20000 --attestation group --prefix ng
row "memory https keepalive individual first" --host "$HTTPS" $ka --devices 80000 --prefix ki
row "memory https keepalive individual again" --host "$HTTPS" $ka --devices 2000 $many --prefix ki --no-setup
half=$(( $(cat "$WORK/last_rate" 2>/dev/null || echo 1200) / 2 ))
row "memory https keepalive individual again at half rate ($half/s)" --host "$HTTPS" $ka --devices 2000 $many --prefix ki --no-setup --rate "$half"
for g in 1 100 10000; do
    row "memory https keepalive group$g first" --host "$HTTPS" $ka --devices 80000 --attestation group --groups $g --prefix kg$g
    row "memory https keepalive group$g again" --host "$HTTPS" $ka --devices 2000 $many --attestation group --groups $g --prefix kg$g --no-setup
done
row "memory mqtt new individual first" --host "$MQTT" --transport mqtt --devices 20000 --prefix mq
row "memory mqtt new individual again" --host "$MQTT" --transport mqtt --devices 2000 $many --prefix mq --no-setup
start_dpsd embedded
row "embedded https new group1 first" --host "$HTTPS" --devices 20000 --attestation group --prefix eg
row "embedded https keepalive group1 first" --host "$HTTPS" $ka --devices 80000 --attestation group --prefix ek
row "embedded https keepalive group1 again" --host "$HTTPS" $ka --devices 2000 $many --attestation group --prefix ek --no-setup
if [ -n "${DPS_TEST_DATABASE_URL:-}" ]; then
    start_dpsd postgres
    row "postgres https new group1 first" --host "$HTTPS" --devices 20000 --attestation group --prefix pg
    row "postgres https keepalive group1 first" --host "$HTTPS" $ka --devices 80000 --attestation group --prefix pk
    row "postgres https keepalive group1 again" --host "$HTTPS" $ka --devices 2000 $many --attestation group --prefix pk --no-setup
fi
