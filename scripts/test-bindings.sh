#!/usr/bin/env bash
# Builds the C, Python and Node bindings (dev profile, in the workspace's target directory so
# that dependencies compile once) and runs their tests against the real engines.
# Idempotent: installs what is missing (cc, valgrind, python3-venv, nodejs/npm) and reuses
# bindings/python/.venv and bindings/node/node_modules.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT"

bash scripts/docker.sh
LIBGO_LIBVIRT_TCP=1 bash scripts/libvirt.sh

command -v cc >/dev/null || apt_install gcc libc6-dev
command -v valgrind >/dev/null || apt_install valgrind
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv --help >/dev/null 2>&1 || apt_install python3-venv

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$LIBGO_ROOT/target}
started=$(date +%s)

log "Python and TypeScript data types: generated from the core's (the OpenAPI document)"
python3 scripts/gen-binding-types.py --check

log "C: header, C programs (cc), valgrind"
cargo test -p libgo-c -p libgo-bindings-common --locked

log "Python: building the module (maturin, dev profile) into bindings/python/.venv"
venv=bindings/python/.venv
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
export PATH="$LIBGO_ROOT/$venv/bin:$PATH"   # the build backend runs `maturin` from PATH
"$venv/bin/python" -m pip install -q --upgrade maturin pytest mypy docker
MATURIN_PEP517_ARGS="--profile dev" "$venv/bin/python" -m pip install -q --no-build-isolation ./bindings/python
log "Python: pytest (includes mypy --strict and the examples)"
"$venv/bin/python" -m pytest bindings/python/tests -q

log "Node: npm install, napi build (dev profile), node --test (includes tsc)"
(
  cd bindings/node
  if [ ! -d node_modules ] || [ package.json -nt node_modules ]; then
    npm install --no-audit --no-fund --loglevel=error
  fi
  npx napi build --platform --js index.js --dts index.d.ts
  node --test test/
)

log "bindings done in $(( $(date +%s) - started )) s"
