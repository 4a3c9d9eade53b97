# shellcheck shell=bash
# Helpers shared by the examples' run.sh scripts. Source it; do not run it.
#
# Each example runs its own PostgreSQL and redis-server (with the module)
# through scripts/start.sh, on its own ports and in its own run directory
# (.run/examples/<name>), so it never touches the servers of a developer's
# scripts/start.sh (.run/) nor those of another example. Every run starts
# from empty servers and stops them when it exits, pass or fail.
# shellcheck disable=SC2034 # variables used by the scripts that source this

# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

EXAMPLES_DIR="$REPO_ROOT/examples"
# Builds, venvs and logs of the examples; kept between runs (caches).
EXAMPLES_RUN="$REPO_ROOT/.run/examples"
EXAMPLE_PIDS=()

# example_init NAME REDIS_PORT PG_PORT: names the example and its servers'
# ports: CAMPAIGN_REDIS_PORT / CAMPAIGN_PG_PORT from the environment, else the
# first free port from the given ones.
example_init() {
    EXAMPLE_NAME="$1"
    REDIS_PORT="${CAMPAIGN_REDIS_PORT:-$(free_port_from "$2")}"
    PG_PORT="${CAMPAIGN_PG_PORT:-$(free_port_from "$3")}"
    RUN_DIR="$EXAMPLES_RUN/$EXAMPLE_NAME"
    export CAMPAIGN_RUN_DIR="$RUN_DIR" CAMPAIGN_REDIS_PORT="$REDIS_PORT" CAMPAIGN_PG_PORT="$PG_PORT"
    mkdir -p "$EXAMPLES_RUN"
    START_LOG="$EXAMPLES_RUN/$EXAMPLE_NAME.start.log"
}

# Stops what this example started: its own processes (by pid), then the
# servers (scripts/stop.sh with this example's run directory).
example_cleanup() {
    local status=$? pid
    for pid in "${EXAMPLE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    bash "$REPO_ROOT/scripts/stop.sh" >>"$START_LOG" 2>&1 || warn "stopping the servers failed; see $START_LOG"
    if [ "$status" -ne 0 ]; then
        printf 'FAIL: %s (exit %s); logs under %s\n' "$EXAMPLE_NAME" "$status" "$RUN_DIR" >&2
    fi
    exit "$status"
}

# Starts empty servers: stops leftovers of an interrupted run, deletes their
# data (the PostgreSQL cluster may sit outside the run directory, see
# scripts/start.sh), runs scripts/start.sh, and stops them again on exit.
example_start_servers() {
    bash "$REPO_ROOT/scripts/stop.sh" >"$START_LOG" 2>&1 || die "stopping leftover servers failed; see $START_LOG"
    if [ -L "$RUN_DIR/postgres" ]; then
        local outside
        outside="$(readlink -f "$RUN_DIR/postgres")"
        case "$outside" in
            /var/tmp/redis-campaign-*) rm -rf "$outside" ;;
            *) die "unexpected PostgreSQL directory $outside; delete $RUN_DIR by hand" ;;
        esac
    fi
    rm -rf "$RUN_DIR"
    trap example_cleanup EXIT
    trap 'exit 130' INT TERM
    log "$EXAMPLE_NAME: starting PostgreSQL (port $PG_PORT) and redis-server (port $REDIS_PORT) with scripts/start.sh"
    if ! bash "$REPO_ROOT/scripts/start.sh" >>"$START_LOG" 2>&1; then
        tail -n 30 "$START_LOG" >&2
        die "scripts/start.sh failed; see $START_LOG"
    fi
    PG_BIN="$(pg_bin_dir)"
}

# redis-cli against this example's server.
rcli() {
    redis-cli -p "$REDIS_PORT" "$@"
}

# psql against this example's database; prints unaligned tuples only.
pg() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d campaign -tA "$@"
}

# A free TCP port to listen on, from the given default upwards.
free_port_from() {
    local port="$1"
    while port_in_use "$port"; do
        port=$((port + 1))
    done
    printf '%s\n' "$port"
}

# A Python venv shared by the examples (.run/examples/venv) with the pinned
# packages of examples/requirements.txt; sets PYTHON to its interpreter.
example_python() {
    local venv="$EXAMPLES_RUN/venv"
    PYTHON="$venv/bin/python"
    "$PYTHON" -c '' 2>/dev/null || rm -rf "$venv"
    if [ ! -d "$venv" ]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3
        if ! python3 -m venv "$venv"; then
            # Debian's python3 makes venvs only with python3-venv.
            rm -rf "$venv"
            is_installed python3-venv && die "python3 -m venv failed"
            apt_install python3-venv
            python3 -m venv "$venv" || die "python3 -m venv failed"
        fi
    fi
    if ! cmp -s "$EXAMPLES_DIR/requirements.txt" "$venv/requirements.txt"; then
        log "installing $(tr '\n' ' ' <"$EXAMPLES_DIR/requirements.txt")into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$EXAMPLES_DIR/requirements.txt"
        cp "$EXAMPLES_DIR/requirements.txt" "$venv/requirements.txt"
    fi
}

# Fails the example with a message unless the two values are equal.
expect_eq() {
    local what="$1" want="$2" got="$3"
    if [ "$want" != "$got" ]; then
        die "$EXAMPLE_NAME: $what: expected '$want', got '$got'"
    fi
    printf '  ok  %s\n' "$what"
}
