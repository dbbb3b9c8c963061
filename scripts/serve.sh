#!/usr/bin/env bash
# Runs the LibGo server (embedded SQLite in $LIBGO_DATA_DIR) against the local Docker and
# libvirt, installing and starting both first. Extra arguments go to `libgo-server serve`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT"

bash scripts/docker.sh
if [ -f scripts/libvirt.sh ]; then bash scripts/libvirt.sh; fi

export LIBGO_DATA_DIR=${LIBGO_DATA_DIR:-/var/lib/libgo}
cargo build --release --locked -p libgo-http --bin libgo-server
exec "${CARGO_TARGET_DIR:-$LIBGO_ROOT/target}/release/libgo-server" serve "$@"
