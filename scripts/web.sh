#!/usr/bin/env bash
# LibGo's web console: libgo-web/ (TypeScript, Preact, Vite) built into libgo-http/web/,
# which libgo-server embeds and serves at `/`. npm packages are pinned by
# libgo-web/package-lock.json (npm ci); npm's cache is $LIBGO_CACHE/npm.
#   bash scripts/web.sh install  installs the pinned packages (skipped when up to date)
#   bash scripts/web.sh build    + generates the API types from libgo-http/openapi.json,
#                                typechecks and builds; commit libgo-http/web afterwards
#   bash scripts/web.sh check    the generated types and the embedded build are what the
#                                sources give (CI): rebuilds into a scratch folder and compares
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$LIBGO_ROOT/libgo-web"

command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
# Vite 8 needs Node.js 20.19 or later (Debian 12's nodejs is 18).
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' || {
  log "the web console needs Node.js >= 20.19; found $(node --version)"
  exit 1
}

install() {
  local want have
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  have=$(cat node_modules/.libgo-lock 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "web: npm ci"
    npm ci --no-audit --no-fund --loglevel=error --cache "$LIBGO_CACHE/npm"
    echo "$want" >node_modules/.libgo-lock
  fi
}

case "${1:-build}" in
  install)
    install
    ;;
  build)
    install
    npx openapi-typescript ../libgo-http/openapi.json -o src/api/schema.d.ts >/dev/null
    npx tsc --noEmit
    npx vite build --logLevel warn
    log "web: built into libgo-http/web ($(du -sh ../libgo-http/web | cut -f1))"
    ;;
  check)
    install
    scratch=$(mktemp -d /tmp/libgo-web.XXXXXX)
    trap 'rm -rf "$scratch"' EXIT
    npx openapi-typescript ../libgo-http/openapi.json -o "$scratch/schema.d.ts" >/dev/null
    if ! cmp -s "$scratch/schema.d.ts" src/api/schema.d.ts; then
      log "web: src/api/schema.d.ts is not what libgo-http/openapi.json gives: run bash scripts/web.sh build"
      exit 1
    fi
    npx tsc --noEmit
    npx vite build --logLevel warn --outDir "$scratch/web" --emptyOutDir
    if ! diff -r "$scratch/web" ../libgo-http/web >&2; then
      log "web: libgo-http/web is not the build of libgo-web: run bash scripts/web.sh build"
      exit 1
    fi
    log "web: the embedded console is the build of its sources"
    ;;
  *)
    log "usage: web.sh install|build|check"
    exit 2
    ;;
esac
