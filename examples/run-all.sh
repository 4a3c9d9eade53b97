#!/usr/bin/env bash
# Runs every example end to end, with its assertions, one after the other
# (each starts and stops its own PostgreSQL and redis-server with the module
# through scripts/start.sh):
#
#   snippets        README shows the client snippets exactly as tested
#   clients         the client snippets (redis-py, node-redis; go-redis and
#                   Jedis where their packages can be had)
#   login-service   the axum login path over redis-rs
#   queue-consumer  the Streams consumer, killed between ADD and XACK
#
# Exits non-zero if any fails. Builds the module first if needed (start.sh);
# the login service's first build takes about 3 minutes on 2 cores.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

EXAMPLES_DIR="$REPO_ROOT/examples"
passed=0
failed=0
failures=()

run() {
    local name="$1" start=$SECONDS
    shift
    log "example $name"
    if "$@"; then
        passed=$((passed + 1))
        log "example $name: passed ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        log "example $name: FAILED ($((SECONDS - start)) s)"
    fi
}

run snippets python3 "$EXAMPLES_DIR/check_snippets.py"
run clients bash "$EXAMPLES_DIR/clients/run.sh"
run login-service bash "$EXAMPLES_DIR/login-service/run.sh"
run queue-consumer bash "$EXAMPLES_DIR/queue-consumer/run.sh"

if [ "$failed" -gt 0 ]; then
    printf 'failed: %s\n' "${failures[*]}" >&2
fi
echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
