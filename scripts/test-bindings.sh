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
[ -f /usr/include/cjson/cJSON.h ] || apt_install libcjson-dev   # the C test reads JSON with it
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv --help >/dev/null 2>&1 || apt_install python3-venv

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$LIBGO_ROOT/target}
started=$(date +%s)

log "Python and TypeScript data types: generated from the core's (the OpenAPI document)"
python3 scripts/gen-bindings.py --check

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

# As a new user installs them: the packed Node package into a new project, the built
# Python wheel into a new venv, each then used against the real dockerd. (npm's prepack
# builds a release addon; here the dev one just built is packed, to spare CI a release
# build of the whole tree.)
fresh=$(mktemp -d /tmp/libgo-install.XXXXXX)
trap 'rm -rf "$fresh"' EXIT
log "Node: npm pack, then npm install of the tarball in a new project"
tarball=$(cd bindings/node && npm pack --ignore-scripts --silent --pack-destination "$fresh" | tail -1)
(
  mkdir -p "$fresh/node-app" && cd "$fresh/node-app"
  npm init -y >/dev/null
  npm install --no-audit --no-fund --loglevel=error "$fresh/$tarball"
  node -e "
    const { Client } = require('libgo')
    Client.connect({ docker: 'required', kvm: 'off' })
      .then((c) => c.backends())
      .then((b) => { if (JSON.stringify(b) !== '[\"docker\"]') throw new Error('backends: ' + b); console.log('installed Node package works:', b) })
      .catch((e) => { console.error(e); process.exit(1) })"
)
log "Python: maturin build of a wheel, then pip install of it in a new venv"
# A wheel for this machine: libvirt and the other C libraries stay the system's (a
# manylinux wheel would need them bundled, which auditwheel does with patchelf).
"$venv/bin/maturin" build --profile dev --quiet --auditwheel skip --manifest-path bindings/python/Cargo.toml --out "$fresh/wheels"
"$PYTHON" -m venv "$fresh/py"
"$fresh/py/bin/pip" install -q "$fresh"/wheels/*.whl
(cd "$fresh" && "$fresh/py/bin/python" -c "
import libgo
c = libgo.Client({'docker': 'required', 'kvm': 'off'})
assert c.backends() == ['docker'], c.backends()
assert any('libgo-test/busybox:latest' in i['tags'] for i in c.image_list())
print('installed Python wheel works:', libgo.__file__)")

log "bindings done in $(( $(date +%s) - started )) s"
