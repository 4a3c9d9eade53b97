#!/usr/bin/env bash
# Set up what is missing, build the module and run every test (unit, property
# and integration tests; the integration tests start their own redis-server
# and PostgreSQL and load target/release/libredis_campaign.so).
#
# Extra arguments go to cargo test; those after a "--" go to the test binaries:
#   scripts/test.sh                      # everything
#   scripts/test.sh some_test_name       # only matching tests
#   scripts/test.sh -- --nocapture       # show test output
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$REPO_ROOT/scripts/setup.sh"
ensure_cargo_on_path
cd "$REPO_ROOT"

cargo_args=()
test_args=()
seen_separator=0
threads_given=0
for arg in "$@"; do
    if [ "$seen_separator" -eq 0 ] && [ "$arg" = "--" ]; then
        seen_separator=1
    elif [ "$seen_separator" -eq 0 ]; then
        cargo_args+=("$arg")
    else
        case "$arg" in --test-threads | --test-threads=*) threads_given=1 ;; esac
        test_args+=("$arg")
    fi
done
if [ "$threads_given" -eq 0 ]; then
    test_args=(--test-threads=2 "${test_args[@]}")
fi

log "cargo build --release"
cargo build --release

log "cargo test --release ${cargo_args[*]} -- ${test_args[*]}"
cargo test --release "${cargo_args[@]}" -- "${test_args[@]}"
