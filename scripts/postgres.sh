#!/usr/bin/env bash
# PostgreSQL for the replica tests: Debian's `postgresql`, its cluster started by this script
# (no init system here), and a database of the caller's own.
#
#   scripts/postgres.sh create NAME   prints postgres://NAME:NAME@127.0.0.1:PORT/NAME
#   scripts/postgres.sh drop NAME     drops that database and role
#
# Idempotent: a cluster that answers is left alone. Test-only credentials (the password is
# the name) on loopback.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd=${1:-}
name=${2:-}
[[ "$cmd" =~ ^(create|drop)$ && "$name" =~ ^[a-z][a-z0-9_]{0,40}$ ]] || {
  echo "usage: $0 create|drop NAME (NAME: a-z0-9_)" >&2
  exit 2
}

# Tests call this in parallel: one caller at a time installs, creates and starts the cluster,
# or two `pg_ctlcluster start` race and the loser fails on the other's pid file.
exec 9>/run/lock/libgo-postgres.lock
flock 9
apt_install postgresql
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
[ -n "$version" ] || { log "no PostgreSQL server under /usr/lib/postgresql"; exit 1; }
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  log "creating the PostgreSQL $version cluster"
  pg_createcluster "$version" main >/dev/null
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
  log "starting PostgreSQL $version on port $port"
  # A stale pid file from a killed server keeps it from starting.
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    rm -f "/var/lib/postgresql/$version/main/postmaster.pid"
  fi
  # The server must not inherit the lock, or it would hold it for its whole life.
  pg_ctlcluster "$version" main start 9>&-
  wait_for PostgreSQL 60 pg_isready -q -h 127.0.0.1 -p "$port"
fi

flock -u 9

psql_admin() { su postgres -c "psql -q -v ON_ERROR_STOP=1 -p $port $*"; }
if [ "$cmd" = create ]; then
  psql_admin "-c \"CREATE ROLE $name LOGIN PASSWORD '$name'\"" >/dev/null
  psql_admin "-c \"CREATE DATABASE $name OWNER $name\"" >/dev/null
  echo "postgres://$name:$name@127.0.0.1:$port/$name"
else
  psql_admin "-c \"DROP DATABASE IF EXISTS $name WITH (FORCE)\"" >/dev/null
  psql_admin "-c \"DROP ROLE IF EXISTS $name\"" >/dev/null
fi
