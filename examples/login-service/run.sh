#!/usr/bin/env bash
# The login path example, end to end with one command: starts PostgreSQL and
# redis-server with the module (scripts/start.sh, own ports and run
# directory), builds and starts the login service (an axum HTTP service that
# asks CAMPAIGN.HAS through redis-rs), checks its answers with curl, and stops
# everything.
#
#   CAMPAIGN_REDIS_PORT (default: first free from 16391), CAMPAIGN_PG_PORT (default: first free from 15433),
#   LOGIN_HTTP_PORT (default: the first free port from 18080)
#
# The build goes to .run/examples/login-service-target (about 3 minutes cold
# on 2 cores, seconds after that).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

example_init login-service 16391 15433
HTTP_PORT="${LOGIN_HTTP_PORT:-$(free_port_from 18080)}"
SERVICE_DIR="$EXAMPLES_DIR/login-service"
SERVICE_TARGET="$EXAMPLES_RUN/login-service-target"

ensure_cargo_on_path
command -v curl >/dev/null 2>&1 || apt_install curl
log "login-service: cargo build --release (target dir $SERVICE_TARGET)"
build_start=$SECONDS
CARGO_TARGET_DIR="$SERVICE_TARGET" cargo build --release --locked --quiet \
    --manifest-path "$SERVICE_DIR/Cargo.toml"
log "login-service: built in $((SECONDS - build_start)) s"

example_start_servers

SERVICE_LOG="$RUN_DIR/login-service.log"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" LISTEN="127.0.0.1:$HTTP_PORT" \
    "$SERVICE_TARGET/release/login-service" >"$SERVICE_LOG" 2>&1 &
EXAMPLE_PIDS+=("$!")
for _ in $(seq 1 100); do
    grep -q 'listening on' "$SERVICE_LOG" 2>/dev/null && break
    kill -0 "${EXAMPLE_PIDS[0]}" 2>/dev/null || break
    sleep 0.1
done
grep -q 'listening on' "$SERVICE_LOG" || {
    cat "$SERVICE_LOG" >&2
    die "login-service did not start"
}
BASE="http://127.0.0.1:$HTTP_PORT"
log "login-service: listening on $BASE; checking its answers"

# http METHOD PATH -> "STATUS BODY"
http() {
    curl -sS -X "$1" -o "$RUN_DIR/body" -w '%{http_code}' "$BASE$2" >"$RUN_DIR/status"
    printf '%s %s\n' "$(cat "$RUN_DIR/status")" "$(tr -d '\n' <"$RUN_DIR/body")"
}

expect_eq "enroll user:1 in spring-sale" '200 {"added":1}' "$(http POST '/enroll?campaign=spring-sale&user=user:1')"
expect_eq "enroll user:1 again changes nothing" '200 {"added":0}' "$(http POST '/enroll?campaign=spring-sale&user=user:1')"
expect_eq "enroll alice@example.com (URL-encoded)" '200 {"added":1}' "$(http POST '/enroll?campaign=spring-sale&user=alice%40example.com')"
expect_eq "login user:1 -> member" '200 {"member":true}' "$(http GET '/login?user=user:1&campaign=spring-sale')"
expect_eq "login alice@example.com -> member" '200 {"member":true}' "$(http GET '/login?user=alice%40example.com&campaign=spring-sale')"
expect_eq "login user:2 -> not a member" '200 {"member":false}' "$(http GET '/login?user=user:2&campaign=spring-sale')"
expect_eq "login to an unknown campaign -> not a member" '200 {"member":false}' "$(http GET '/login?user=user:1&campaign=no-such-campaign')"

# The enrollments were written behind to PostgreSQL.
expect_eq "CAMPAIGN.FLUSH" "OK" "$(rcli CAMPAIGN.FLUSH 10000 >/dev/null && echo OK)"
expect_eq "PostgreSQL holds the enrollments" "alice@example.com,user:1" \
    "$(pg -c "SELECT string_agg(member, ',' ORDER BY member) FROM campaign_members WHERE campaign = 'spring-sale'")"

# A campaign that only PostgreSQL knows (rows written around the module):
# the first login loads it into Redis (read-through) and answers from it.
pg -c "INSERT INTO campaign_members (campaign, member) VALUES ('autumn', 'user:7'), ('autumn', 'user:8')"
expect_eq "autumn is not in Redis yet" "0" "$(rcli EXISTS autumn)"
expect_eq "login user:7 to autumn -> member (read-through)" '200 {"member":true}' "$(http GET '/login?user=user:7&campaign=autumn')"
expect_eq "autumn is now in Redis, whole" "2" "$(rcli CAMPAIGN.CARD autumn)"

# Bad requests.
expect_eq "login without user -> 400" '400 {"error":"user and campaign are required"}' "$(http GET '/login?campaign=spring-sale')"
long_user="$(printf 'u%.0s' $(seq 1 300))"
expect_eq "a member the module refuses -> 400" "400" "$(http GET "/login?campaign=spring-sale&user=$long_user" | cut -d' ' -f1)"

# A dropped Redis connection: a login in flight gets 503 (never a hang);
# the connection manager reconnects and the service answers again.
rcli CLIENT KILL TYPE normal >/dev/null
first="$(http GET '/login?user=user:1&campaign=spring-sale' | cut -d' ' -f1)"
case "$first" in 200 | 503) ;; *) die "login right after the connection was killed answered $first" ;; esac
answer=""
for _ in $(seq 1 50); do
    answer="$(http GET '/login?user=user:1&campaign=spring-sale')"
    [ "$answer" = '200 {"member":true}' ] && break
    sleep 0.1
done
expect_eq "login after Redis dropped the connection -> member (reconnected; first answer $first)" \
    '200 {"member":true}' "$answer"

log "login-service: all checks passed"
