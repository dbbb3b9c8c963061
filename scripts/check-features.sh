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

# A crate people install (`cargo install libgo-cli`, `cargo add libgo`) must depend only on
# crates that are published too: every workspace dependency of a publishable crate is
# publishable and asked for by version.
cargo metadata --locked --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
publishable = {p["name"]: p.get("publish") != [] for p in meta["packages"]}
bad = []
for p in meta["packages"]:
    if not publishable[p["name"]]:
        continue
    for d in p["dependencies"]:
        if d.get("path") is None or d["kind"] == "dev":
            continue
        if not publishable.get(d["name"], False) or d["req"] == "*":
            bad.append("%s -> %s (%s)" % (p["name"], d["name"], d["req"]))
if bad:
    print("publishable crates depend on unpublishable or unversioned ones:", *bad, sep="\n  ", file=sys.stderr)
    sys.exit(1)
' || { log "a publishable crate depends on a crate that cannot be published"; fail=1; }
[ "$fail" -eq 0 ] && log "publishing: publishable crates depend only on publishable ones"
exit "$fail"
