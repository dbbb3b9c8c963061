#!/usr/bin/env bash
# Runs the whole test suite against real engines, installing and starting them first.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT"

bash scripts/docker.sh
for extra in scripts/libvirt.sh scripts/ovs.sh scripts/test-tools.sh; do
  if [ -f "$extra" ]; then bash "$extra"; fi
done

log "checking formatting"
cargo fmt --all -- --check
log "running clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "running the tests"
cargo test --workspace --locked "$@"
