#!/usr/bin/env bash
# Engines are Cargo features: a Docker-only build links no libvirt and a libvirt-only build
# no Docker client, in the umbrella crate, the server and the bindings. Checks both the
# dependency graph (`cargo tree`) and that each one-engine build compiles.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT"

fail=0
for crate in libgo libgo-http libgo-bindings-common; do
  docker_only=$(cargo tree --locked -e normal -p "$crate" --no-default-features --features docker --prefix none)
  kvm_only=$(cargo tree --locked -e normal -p "$crate" --no-default-features --features kvm --prefix none)
  if grep -qE '^(virt|virt-sys|libgo-kvm) ' <<<"$docker_only"; then
    log "$crate with only the docker feature still depends on libvirt:"
    grep -E '^(virt|virt-sys|libgo-kvm) ' <<<"$docker_only" | sort -u >&2
    fail=1
  fi
  if grep -qE '^(bollard|libgo-docker) ' <<<"$kvm_only"; then
    log "$crate with only the kvm feature still depends on the Docker client:"
    grep -E '^(bollard|libgo-docker) ' <<<"$kvm_only" | sort -u >&2
    fail=1
  fi
  for engine in docker kvm; do
    cargo check --locked -q -p "$crate" --no-default-features --features "$engine" \
      || { log "$crate does not build with only the $engine feature"; fail=1; }
  done
done
[ "$fail" -eq 0 ] && log "engine features: one-engine builds link only their engine"
exit "$fail"
