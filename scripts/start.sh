#!/usr/bin/env bash
# Set up what is missing, build the module, and start a local PostgreSQL and a
# redis-server with the module loaded. Everything lives under ./.run/.
#
#   CAMPAIGN_PG_PORT     PostgreSQL port (default 55432)
#   CAMPAIGN_REDIS_PORT  redis-server port (default 6390)
#   CAMPAIGN_RUN_DIR     where data, logs and pid files go (default ./.run);
#                        scripts/stop.sh needs the same value
#
# Stop both with scripts/stop.sh. Re-running this script while they are
# running leaves them running.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PG_PORT="${CAMPAIGN_PG_PORT:-55432}"
REDIS_PORT="${CAMPAIGN_REDIS_PORT:-6390}"
PG_DB="campaign"
PG_USER="postgres"

bash "$REPO_ROOT/scripts/setup.sh"
ensure_cargo_on_path

log "building the module (cargo build --release)"
(cd "$REPO_ROOT" && cargo build --release)
[ -f "$MODULE_SO" ] || die "build finished but $MODULE_SO is missing"

mkdir -p "$RUN_DIR" "$RUN_DIR/redis"
IS_ROOT=0
if [ "$(id -u)" -eq 0 ]; then
    IS_ROOT=1
fi

# --- PostgreSQL -------------------------------------------------------------

PG_BIN="$(pg_bin_dir)"

# As root the server runs as the postgres user, which must be able to reach its
# data directory. If the repository sits somewhere it cannot enter (under
# /root, say), keep the cluster in /var/tmp and link it from .run/postgres.
if [ ! -e "$RUN_DIR/postgres" ]; then
    if [ "$IS_ROOT" -eq 1 ] && ! runuser -u postgres -- test -x "$RUN_DIR"; then
        outside="/var/tmp/redis-campaign-$(printf '%s' "$RUN_DIR" | cksum | cut -d' ' -f1)"
        log "postgres cannot enter $RUN_DIR; keeping the cluster in $outside"
        mkdir -p "$outside"
        ln -s "$outside" "$RUN_DIR/postgres"
    else
        mkdir -p "$RUN_DIR/postgres"
    fi
fi
PG_BASE="$(readlink -f "$RUN_DIR/postgres")"
PG_DATA="$PG_BASE/data"
PG_LOG="$PG_BASE/postgres.log"
PG_SOCKET_DIR="$PG_BASE/socket"
mkdir -p "$PG_SOCKET_DIR"
if [ "$IS_ROOT" -eq 1 ]; then
    chown -R postgres:postgres "$PG_BASE"
fi

if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "creating a PostgreSQL cluster in $PG_DATA"
    # Throwaway development cluster: trust authentication, reachable only
    # from this machine (127.0.0.1 and a socket inside .run).
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$PG_BASE/initdb.log" 2>&1 ||
        die "initdb failed; see $PG_BASE/initdb.log"
    echo "include_if_exists = 'campaign.conf'" >>"$PG_DATA/postgresql.conf"
fi

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

if pg_running; then
    # postmaster.pid line 4 is the port the running server listens on.
    running_port="$(sed -n 4p "$PG_DATA/postmaster.pid")"
    log "PostgreSQL is already running on port $running_port"
    if [ "$running_port" != "$PG_PORT" ]; then
        warn "it listens on $running_port, not $PG_PORT; using $running_port (stop it to change)"
        PG_PORT="$running_port"
    fi
else
    if port_in_use "$PG_PORT"; then
        die "port $PG_PORT is taken by another process; set CAMPAIGN_PG_PORT to a free port"
    fi
    # The socket path is limited to ~107 bytes; beyond that, TCP only.
    socket_dirs="$PG_SOCKET_DIR"
    if [ "${#PG_SOCKET_DIR}" -gt 90 ]; then
        socket_dirs=""
    fi
    cat >"$PG_DATA/campaign.conf" <<CONF
# Written by scripts/start.sh on every start.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$socket_dirs'
CONF
    if [ "$IS_ROOT" -eq 1 ]; then
        chown postgres:postgres "$PG_DATA/campaign.conf"
    fi
    log "starting PostgreSQL on port $PG_PORT (log: $PG_LOG)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null ||
        die "PostgreSQL did not start; see $PG_LOG"
fi

psql_cmd=("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER")
if [ -z "$("${psql_cmd[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]; then
    log "creating database $PG_DB"
    "${psql_cmd[@]}" -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
fi

DATABASE_URL="host=127.0.0.1 port=$PG_PORT dbname=$PG_DB user=$PG_USER connect_timeout=5"

# --- Redis ------------------------------------------------------------------

REDIS_PID_FILE="$RUN_DIR/redis.pid"
REDIS_LOG="$RUN_DIR/redis.log"
REDIS_PORT_FILE="$RUN_DIR/redis.port"

redis_pid_alive() {
    local pid
    [ -f "$REDIS_PID_FILE" ] || return 1
    pid="$(cat "$REDIS_PID_FILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

if redis_pid_alive; then
    running_port="$(cat "$REDIS_PORT_FILE" 2>/dev/null || echo "$REDIS_PORT")"
    log "redis-server is already running (pid $(cat "$REDIS_PID_FILE"), port $running_port)"
    if [ "$running_port" != "$REDIS_PORT" ]; then
        warn "it listens on $running_port, not $REDIS_PORT; using $running_port (stop it to change)"
        REDIS_PORT="$running_port"
    fi
else
    if port_in_use "$REDIS_PORT"; then
        die "port $REDIS_PORT is taken by another process; set CAMPAIGN_REDIS_PORT to a free port"
    fi
    rm -f "$REDIS_PID_FILE"
    log "starting redis-server on port $REDIS_PORT (log: $REDIS_LOG)"
    redis-server \
        --port "$REDIS_PORT" \
        --bind 127.0.0.1 -::1 \
        --daemonize yes \
        --dir "$RUN_DIR/redis" \
        --logfile "$REDIS_LOG" \
        --pidfile "$REDIS_PID_FILE" \
        --appendonly yes \
        --enable-module-command local \
        --enable-debug-command local \
        --loadmodule "$MODULE_SO" database-url "$DATABASE_URL"
    echo "$REDIS_PORT" >"$REDIS_PORT_FILE"
fi

# Up to 10 s; give up early once the daemonized server has gone away.
for i in $(seq 1 100); do
    if [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = "PONG" ]; then
        break
    fi
    if [ "$i" -gt 10 ] && ! redis_pid_alive; then
        break
    fi
    sleep 0.1
done
if [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" != "PONG" ]; then
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "redis-server does not answer on port $REDIS_PORT; see $REDIS_LOG"
fi

cat <<MSG

redis-campaign is running.

  Redis       127.0.0.1:$REDIS_PORT  (module: $MODULE_SO)
  PostgreSQL  127.0.0.1:$PG_PORT  database $PG_DB, user $PG_USER (trust auth)
  Logs        $REDIS_LOG
              $PG_LOG

Connect:
  redis-cli -p $REDIS_PORT
  redis-cli -p $REDIS_PORT CAMPAIGN.ADD spring-sale user:42
  redis-cli -p $REDIS_PORT CAMPAIGN.HAS spring-sale user:42
  $PG_BIN/psql -h 127.0.0.1 -p $PG_PORT -U $PG_USER $PG_DB

Stop:
  $REPO_ROOT/scripts/stop.sh
MSG
