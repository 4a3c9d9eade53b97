#!/usr/bin/env bash
# Runs the integration tests over and over to prove they are deterministic:
# each test file ROUNDS times on one test thread, then the whole suite
# SUITE_ROUNDS times as CI runs it. Stops at the first failure and keeps its
# output; prints how many runs passed and how long they took.
#
#   scripts/soak-tests.sh                 # 20 rounds per file, 5 whole suites
#   ROUNDS=3 SUITE_ROUNDS=1 scripts/soak-tests.sh write_behind rebuild
#
# The module and the test binary are copied aside first, so rebuilding while
# the soak runs does not change what it tests.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS="${ROUNDS:-20}"
SUITE_ROUNDS="${SUITE_ROUNDS:-5}"

bash "$REPO_ROOT/scripts/setup.sh"
ensure_cargo_on_path
cd "$REPO_ROOT"

log "building the module and the integration test binary"
cargo build --release
binary=$(cargo test --release --test integration --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "integration":
        print(m["executable"])')
[ -x "$binary" ] || die "integration test binary not found"

soak_dir="$RUN_DIR/soak"
rm -rf "$soak_dir"
mkdir -p "$soak_dir"
cp "$binary" "$soak_dir/integration"
cp "$MODULE_SO" "$soak_dir/libredis_campaign.so"
export CAMPAIGN_MODULE="$soak_dir/libredis_campaign.so"

if [ "$#" -gt 0 ]; then
    files=("$@")
else
    files=()
    for path in tests/integration/*.rs; do
        name=$(basename "$path" .rs)
        [ "$name" = main ] || files+=("$name")
    done
fi

run() { # label, then the test binary's arguments
    local label="$1" started output
    shift
    started=$(date +%s)
    output="$soak_dir/last.log"
    if ! "$soak_dir/integration" "$@" >"$output" 2>&1; then
        tail -n 60 "$output" >&2
        die "$label failed after $(($(date +%s) - started)) s (full output: $output)"
    fi
    printf '%s\n' "$(grep -E '^test result:' "$output" | tail -n 1) [$label, $(($(date +%s) - started)) s]"
}

soak_started=$(date +%s)
for file in "${files[@]}"; do
    for round in $(seq 1 "$ROUNDS"); do
        run "$file::, round $round/$ROUNDS" "$file::" --test-threads=1
    done
done
for round in $(seq 1 "$SUITE_ROUNDS"); do
    run "whole suite, round $round/$SUITE_ROUNDS" --test-threads=2
done
log "soak passed: ${#files[@]} files x $ROUNDS rounds, $SUITE_ROUNDS whole suites, $(($(date +%s) - soak_started)) s"
