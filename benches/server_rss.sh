#!/usr/bin/env bash
# RSS of a release libgo-server with both engines: idle, after a login, and after listing
# 1,000 containers through it (made with docker create, removed at the end). Needs
# scripts/docker.sh and scripts/libvirt.sh; build first: cargo build --release -p libgo-http.
set -euo pipefail
cd "$(dirname "$0")/.."
srv=${SERVER:-target/release/libgo-server}
data=$(mktemp -d); port=18999
LIBGO_DATA_DIR=$data LIBGO_LISTEN=127.0.0.1:$port LIBGO_ADMIN_PASSWORD=rss-admin-pw LIBGO_KVM_ACCELERATOR=tcg LIBGO_STATS_INTERVAL_SECS=0 $srv serve >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; docker ps -aq --filter label=rss-test | xargs -r docker rm -f >/dev/null' EXIT
for i in $(seq 100); do curl -sf 127.0.0.1:$port/health | grep -q '"up":true.*"up":true' && break; sleep 0.2; done
sleep 3
# Where the memory goes: anonymous (heap, stacks) against file-backed (code of the binary
# and of the shared libraries it maps), then the largest mappings.
breakdown() {
  grep -E '^(Rss|Anonymous|Private_Clean|Shared_Clean|Private_Dirty):' /proc/$pid/smaps_rollup | tr -s ' ' | tr '\n' ' '
  echo
  awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; if(name=="") name="[anon]"} /^Rss:/{rss[name]+=$2} END{for(n in rss) if(rss[n]>=256) printf "  %6d KiB %s\n", rss[n], n}' /proc/$pid/smaps | sort -rn | head -12
}
echo "idle (both engines): $(grep -E 'VmRSS' /proc/$pid/status)"
breakdown
tok=$(curl -sf -XPOST 127.0.0.1:$port/login -H 'content-type: application/json' -d '{"username":"admin","password":"rss-admin-pw"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
echo "after a login: $(grep -E 'VmRSS' /proc/$pid/status)"
for i in $(seq 1000); do echo "rss-$i"; done | xargs -P 4 -I{} docker create -q --label rss-test=1 --name {} libgo-test/busybox:latest sleep 1 >/dev/null
for p in $(seq 1 10); do curl -sf "127.0.0.1:$port/api/v1/instances?label=rss-test=1&page=$p&pageSize=100" -H "Authorization: Bearer $tok" >/dev/null; done
for i in 1 2 3; do curl -sf "127.0.0.1:$port/api/v1/instances?pageSize=100" -H "Authorization: Bearer $tok" | python3 -c 'import sys,json; print("count", json.load(sys.stdin)["count"])'; done
echo "after listing 1,000: $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr '\n' ' ')"
breakdown
