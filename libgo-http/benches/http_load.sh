#!/usr/bin/env bash
# Bounded load test of the REST server on loopback with wrk.
#
#   bash libgo-http/benches/http_load.sh            # from the repository root
#
# Starts dockerd and libvirt (scripts/), builds the release server, creates 200 instances
# (100 containers + 100 VMs, defined but not started), then measures with wrk (2 threads,
# 16 connections, 10 s each): GET /health and GET /api/v1/instances?pageSize=100 (the
# server lists all 200 from both engines per request). It compares the instance list with
# dockerd's own list call (sequential curl over its socket, same for the server), reports
# the server's RSS idle and after the load, and removes everything it created.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$LIBGO_ROOT"
bash scripts/docker.sh
bash scripts/libvirt.sh >/dev/null
apt_install wrk curl jq

PORT=${PORT:-18080}
DURATION=${DURATION:-10s}
BASE="http://127.0.0.1:$PORT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$LIBGO_ROOT/target}
cargo build --release -q -p libgo-http --bin libgo-server
DATA=$(mktemp -d)
TAG="bench-$(date +%s)"
LIBGO_ADMIN_PASSWORD=bench-password LIBGO_RATE_LIMIT_PER_MINUTE=0 LIBGO_STATS_INTERVAL_SECS=0 \
  RUST_LOG=warn LIBGO_KVM_ACCELERATOR=tcg \
  "$CARGO_TARGET_DIR/release/libgo-server" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/server.log" 2>&1 &
PID=$!
cleanup() {
  if [ -n "${TOKEN:-}" ]; then
    for kind in container vm; do
      ids=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/instances?label=bench=$TAG&kind=$kind&pageSize=100" | jq -c '[.items[].name]')
      [ "$ids" = "[]" ] && continue
      loc=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"ids\": $ids, \"force\": true}" "$BASE/api/v1/instances/batch-delete" |
        awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
      curl -s -H "Authorization: Bearer $TOKEN" "$BASE$loc?wait=300" | jq -c '{cleanup: .status, deleted: .result.succeeded}'
    done
  fi
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
wait_for server 30 curl -sf "$BASE/health"
for _ in $(seq 100); do
  [ "$(curl -s "$BASE/health" | jq -r .status)" = ok ] && break
  sleep 0.2
done
TOKEN=$(curl -s -H 'content-type: application/json' -d '{"username":"admin","password":"bench-password"}' "$BASE/login" | jq -r .token)
AUTH="Authorization: Bearer $TOKEN"
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }
hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$PID/status"; }
echo "RSS idle: $(rss)"

batch() { # kind spec-json
  local loc
  loc=$(curl -s -D - -o /dev/null -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"spec\": $2, \"count\": 100, \"namePattern\": \"$TAG-$1-{n}\"}" "$BASE/api/v1/instances/batch" |
    awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
  curl -s -H "$AUTH" "$BASE$loc?wait=300" | jq -c '{status, result: {succeeded: .result.succeeded, failed: .result.failed}}'
}
batch c "{\"name\":\"x\",\"kind\":\"container\",\"image\":\"libgo-test/busybox:latest\",\"labels\":{\"bench\":\"$TAG\"}}"
batch v "{\"name\":\"x\",\"kind\":\"vm\",\"memoryBytes\":67108864,\"labels\":{\"bench\":\"$TAG\"}}"
COUNT=$(curl -s -H "$AUTH" "$BASE/api/v1/instances?label=bench=$TAG&pageSize=1" | jq .count)
echo "instances created: $COUNT"

echo "== wrk GET /health"
wrk -t2 -c16 -d"$DURATION" --latency "$BASE/health" | grep -E 'Requests/sec|50%|99%|requests in'
echo "== wrk GET /api/v1/instances?pageSize=100 (lists all $(curl -s -H "$AUTH" "$BASE/api/v1/instances?pageSize=1" | jq .count) instances)"
wrk -t2 -c16 -d"$DURATION" --latency -H "$AUTH" "$BASE/api/v1/instances?pageSize=100" | grep -E 'Requests/sec|50%|99%|requests in'
echo "RSS after load: $(rss) (peak $(hwm))"

seq_time() { # label curl-args...
  local label=$1; shift
  for _ in $(seq 100); do curl -s -o /dev/null -w '%{time_total}\n' "$@"; done | sort -n |
    awk -v l="$label" '{a[NR]=$1; s+=$1} END {printf "%-42s mean %.2f ms  p50 %.2f ms  p99 %.2f ms\n", l, 1000*s/NR, 1000*a[int(NR*0.5)], 1000*a[int(NR*0.99)]}'
}
echo "== sequential, 100 requests each"
seq_time "dockerd GET /containers/json?all=1" --unix-socket /var/run/docker.sock "http://localhost/containers/json?all=1"
seq_time "libgo GET /api/v1/containers?pageSize=100" -H "$AUTH" "$BASE/api/v1/containers?pageSize=100"
seq_time "libgo GET /api/v1/instances?pageSize=100" -H "$AUTH" "$BASE/api/v1/instances?pageSize=100"
