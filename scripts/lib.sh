# Shared helpers for LibGo's scripts. Sourced, never run.
set -euo pipefail

LIBGO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIBGO_CACHE=${LIBGO_CACHE:-/var/cache/libgo}
mkdir -p "$LIBGO_CACHE"

log() { printf '[libgo] %s\n' "$*" >&2; }

# apt_install PKG... — installs only what is missing; one apt-get update per machine.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "${p%%=*}" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ ! -f "$LIBGO_CACHE/apt-updated" ]; then
    apt-get update -qq && touch "$LIBGO_CACHE/apt-updated"
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" >/dev/null
}

# wait_for DESCRIPTION SECONDS COMMAND... — polls until COMMAND succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "timed out waiting for $what"
  return 1
}
