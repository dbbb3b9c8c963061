#!/usr/bin/env bash
# Installs the tools the tests call besides cargo: openapi-spec-validator (validates the
# REST server's OpenAPI document) and wrk (the HTTP benchmark). Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
  log "installing openapi-spec-validator"
  python3 -m pip install -q 'openapi-spec-validator>=0.7,<0.8'
fi
apt_install wrk
# The C binding's tests compile with the system cc and run under valgrind.
apt_install gcc libc6-dev valgrind
# The command line's terminal tests (console, progress bars) type into a real tmux pane.
apt_install tmux
# ISOs for the KVM tests of media insert and eject.
apt_install genisoimage
