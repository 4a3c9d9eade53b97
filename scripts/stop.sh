#!/usr/bin/env bash
# Stop the redis-server and PostgreSQL started by scripts/start.sh.
# Whatever is already down is skipped. Data under ./.run/ (or
# $CAMPAIGN_RUN_DIR) is kept; delete it to start from scratch.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REDIS_PID_FILE="$RUN_DIR/redis.pid"
REDIS_PORT_FILE="$RUN_DIR/redis.port"

# --- Redis ------------------------------------------------------------------

redis_pid=""
if [ -f "$REDIS_PID_FILE" ]; then
    redis_pid="$(cat "$REDIS_PID_FILE")"
fi
if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    port="$(cat "$REDIS_PORT_FILE" 2>/dev/null || echo "${CAMPAIGN_REDIS_PORT:-6390}")"
    log "stopping redis-server (pid $redis_pid, port $port)"
    # NOSAVE skips the RDB snapshot; with appendonly yes the AOF still holds
    # everything, including the module's journal.
    redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$redis_pid" 2>/dev/null; then
        log "redis-server did not stop on SHUTDOWN; sending SIGTERM to $redis_pid"
        kill -TERM "$redis_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$redis_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$redis_pid" 2>/dev/null; then
            die "redis-server (pid $redis_pid) is still running"
        fi
    fi
    rm -f "$REDIS_PID_FILE"
else
    log "redis-server is not running"
    rm -f "$REDIS_PID_FILE"
fi

# --- PostgreSQL -------------------------------------------------------------

PG_DATA=""
if [ -e "$RUN_DIR/postgres" ]; then
    PG_DATA="$(readlink -f "$RUN_DIR/postgres")/data"
fi
if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/PG_VERSION" ]; then
    PG_BIN="$(pg_bin_dir)"
    if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "stopping PostgreSQL ($PG_DATA)"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
    else
        log "PostgreSQL is not running"
    fi
else
    log "PostgreSQL is not running (no cluster in $RUN_DIR/postgres)"
fi
