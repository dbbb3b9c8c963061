#!/usr/bin/env bash
# Runs the whole test suite against real engines, installing and starting them first:
# formatting, clippy, the Rust tests of every crate, the Python and Node bindings, the web
# console in a browser, then the API fuzzer.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT"
started=$(date +%s)

bash scripts/docker.sh
LIBGO_LIBVIRT_TCP=1 bash scripts/libvirt.sh
bash scripts/ovs.sh
bash scripts/test-tools.sh

log "checking formatting"
cargo fmt --all -- --check
log "running clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "checking one-engine builds"
bash scripts/check-features.sh
log "running the Rust tests (the C binding's run in test-bindings.sh)"
cargo test --workspace --locked --exclude libgo-c --exclude libgo-bindings-common "$@"
bash scripts/test-bindings.sh
log "the web console in headless Chromium"
bash scripts/test-web.sh
log "fuzzing the REST API (schemathesis, as admin and operator)"
bash scripts/fuzz-api.sh

log "all tests passed in $(( $(date +%s) - started )) s"
