#!/usr/bin/env bash
# `libgo list` (embedded) side by side with the engines' own CLIs, the same listing in one
# run: N containers against `docker ps -a`, N VMs against `virsh list --all`.
#   bash benches/cli_list.sh [N...]        (default: 200 1000; needs scripts/docker.sh and
#                                           scripts/libvirt.sh; builds libgo in release)
# Each figure is the median wall time of 9 runs after one warm-up run. Containers are
# created (not started) from the test image; VMs are defined (not started), diskless.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p libgo-cli
LIBGO=$PWD/target/release/libgo
export LIBGO_CONFIG_DIR=$(mktemp -d)
PREFIX=lgbench$$
VIRSH="virsh -q -c qemu:///system"

median_ms() { # command... → median milliseconds of 9 runs
  "$@" >/dev/null 2>&1
  local times=()
  for _ in 1 2 3 4 5 6 7 8 9; do
    local t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    times+=($(( ($(date +%s%N) - t0) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 5p
}

cleanup() {
  docker ps -aq --filter "name=^${PREFIX}-" | xargs -r docker rm -f >/dev/null 2>&1 || true
  for d in $($VIRSH list --all --name | grep "^${PREFIX}-" || true); do
    $VIRSH undefine "$d" >/dev/null 2>&1 || true
  done
  rm -rf "$LIBGO_CONFIG_DIR"
}
trap cleanup EXIT

have_c=0
have_v=0
printf '%-6s %-28s %10s %10s\n' N listing libgo_ms engine_ms
for n in "${@:-200 1000}"; do
  for n1 in $n; do
    while [ "$have_c" -lt "$n1" ]; do
      have_c=$((have_c + 1))
      docker create -q --name "$PREFIX-c$have_c" libgo-test/busybox:latest sleep 1 >/dev/null
    done
    while [ "$have_v" -lt "$n1" ]; do
      have_v=$((have_v + 1))
      $VIRSH define /dev/stdin >/dev/null <<XML
<domain type='qemu'><name>$PREFIX-v$have_v</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>
XML
    done
    c_libgo=$(median_ms "$LIBGO" --local ls --kind container)
    c_docker=$(median_ms docker ps -a)
    v_libgo=$(median_ms "$LIBGO" --local ls --kind vm)
    v_virsh=$(median_ms $VIRSH list --all)
    printf '%-6s %-28s %10s %10s\n' "$n1" "containers (docker ps -a)" "$c_libgo" "$c_docker"
    printf '%-6s %-28s %10s %10s\n' "$n1" "VMs (virsh list --all)" "$v_libgo" "$v_virsh"
  done
done
