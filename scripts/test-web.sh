#!/usr/bin/env bash
# The web console in a real browser: Debian's headless Chromium, driven by playwright-core
# (no browser download), against a libgo-server with both real engines. Screenshots of the
# main pages are left in target/ui-screenshots/. Idempotent: installs chromium and the
# pinned npm packages when missing. WEB_TEST_PATTERN=regex runs only the tests it matches.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT"

apt_install chromium fonts-dejavu-core
bash scripts/web.sh check

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$LIBGO_ROOT/target}
cargo build --locked -q -p libgo-http --bin libgo-server
server="$CARGO_TARGET_DIR/debug/libgo-server"

work=$(mktemp -d /tmp/libgo-web-test.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
password="web-admin-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
LIBGO_DATA_DIR="$work/data" LIBGO_LISTEN="127.0.0.1:$port" LIBGO_ADMIN_PASSWORD="$password" \
  LIBGO_KVM_ACCELERATOR=tcg LIBGO_RATE_LIMIT_PER_MINUTE=0 \
  "$server" serve >"$work/server.log" 2>&1 &
server_pid=$!
cleanup() {
  local rc=$?
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then log "server log: $work/server.log"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT

up() { curl -sf "$base/health" | python3 -c 'import sys,json; h=json.load(sys.stdin); sys.exit(0 if len([b for b in h["backends"] if b["up"]])==2 else 1)'; }
wait_for "libgo-server with both engines" 120 up

shots="$LIBGO_ROOT/target/ui-screenshots"
rm -rf "$shots" && mkdir -p "$shots"
log "web: browser tests (screenshots in $shots)"
LIBGO_URL="$base" LIBGO_ADMIN_PASSWORD="$password" LIBGO_SCREENSHOTS="$shots" \
  LIBGO_GUEST="$LIBGO_CACHE/guest" CHROMIUM=/usr/bin/chromium \
  node --test --test-concurrency=1 ${WEB_TEST_PATTERN:+--test-name-pattern="$WEB_TEST_PATTERN"} libgo-web/tests/
