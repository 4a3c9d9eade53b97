#!/bin/sh
# Makes the cluster on first start (password authentication over TCP,
# POSTGRES_DB created), then runs postgres on POSTGRES_PORT.
set -eu

: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
db="${POSTGRES_DB:-campaign}"
port="${POSTGRES_PORT:-5432}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # Only the socket while the database is created.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p $port" start >/dev/null
    psql -X -q -p "$port" -U postgres -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    pg_ctl -D "$PGDATA" -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c port="$port"
