#!/usr/bin/env bash
# The integration tests make a fresh PostgreSQL database per test (fb_<uuid>). Drop the ones
# earlier runs left, so repeated runs on one machine do not fill its disk. Run before tests.
# Only databases older than an hour are dropped: another test run on this machine may be using
# the younger ones.
set -u
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
psql -tA "$PG" -c "SELECT datname FROM pg_database
  WHERE datname ~ '^fb_[0-9a-f]{32}$'
    AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification < now() - interval '1 hour'" 2>/dev/null |
  while read -r db; do
    psql -q "$PG" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
exit 0
