#!/usr/bin/env bash
# Runs the client snippets of README ("Client libraries") against a
# redis-server with the module and a PostgreSQL (scripts/start.sh, own ports
# and run directory): each does CAMPAIGN.ADD spring-sale user:42 and
# CAMPAIGN.HAS through its library's generic command call. Each runs twice:
# the first ADD adds (added=1), the second changes nothing (added=0).
#
#   redis-py     python/campaign.py   redis from PyPI, in .run/examples/venv
#   node-redis   node/campaign.mjs    redis from npm (npm ci in node/)
#   go-redis     go/main.go           only where Go 1.24+ and its module proxy are
#   Jedis        java/CampaignJedis.java
#                                     only where Maven Central is reachable
#                                     (or JEDIS_CLASSPATH names the jars)
# redis-rs is run by examples/login-service.
#
#   CAMPAIGN_REDIS_PORT (default: first free from 16393), CAMPAIGN_PG_PORT (default: first free from 15435)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

example_init clients 16393 15435
CLIENTS="$EXAMPLES_DIR/clients"
passed=0
failed=0
skipped=0

skip() {
    printf '  SKIP  %s: %s\n' "$1" "$2"
    skipped=$((skipped + 1))
}

# try NAME COMMAND...: runs a snippet twice on a fresh member and checks what
# it prints; afterwards the member is in PostgreSQL.
try() {
    local name="$1" out1 out2 rows
    shift
    rcli CAMPAIGN.REM spring-sale user:42 >/dev/null
    rcli CAMPAIGN.FLUSH 10000 >/dev/null
    if out1="$("$@" 2>&1)" && out2="$("$@" 2>&1)" &&
        [ "$out1" = "added=1 member=1" ] && [ "$out2" = "added=0 member=1" ] &&
        rcli CAMPAIGN.FLUSH 10000 >/dev/null &&
        rows="$(pg -c "SELECT count(*) FROM campaign_members WHERE campaign = 'spring-sale' AND member = 'user:42'")" &&
        [ "$rows" = 1 ]; then
        printf '  ok  %s (%s, then %s; the row is in PostgreSQL)\n' "$name" "$out1" "$out2"
        passed=$((passed + 1))
    else
        printf '  FAIL  %s: printed "%s" then "%s" (want added=1 member=1, then added=0 member=1)\n' \
            "$name" "${out1:-}" "${out2:-}"
        failed=$((failed + 1))
    fi
}

# Prepare the toolchains before starting the servers.
example_python
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
# node_modules/ (ignored by git) is made again when package-lock.json changes.
if ! cmp -s "$CLIENTS/node/package-lock.json" "$CLIENTS/node/node_modules/.installed-lock.json"; then
    log "clients: npm ci in $CLIENTS/node"
    (cd "$CLIENTS/node" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$CLIENTS/node/package-lock.json" "$CLIENTS/node/node_modules/.installed-lock.json"
fi

example_start_servers
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

try redis-py "$PYTHON" "$CLIENTS/python/campaign.py"
try node-redis node "$CLIENTS/node/campaign.mjs"

# go-redis v9 needs Go 1.24 or newer and the Go module proxy.
if ! command -v go >/dev/null 2>&1; then
    skip go-redis "Go is not installed (Debian bookworm's golang-go is 1.19; go-redis v9 needs 1.24 and the Go module proxy)"
else
    go_work="$EXAMPLES_RUN/go-client"
    rm -rf "$go_work"
    cp -r "$CLIENTS/go" "$go_work"
    if (cd "$go_work" && timeout 120 go mod tidy) >"$EXAMPLES_RUN/go-client.log" 2>&1; then
        # shellcheck disable=SC2016 # $1 expands in the inner shell
        try go-redis bash -c 'cd "$1" && go run .' _ "$go_work"
    else
        skip go-redis "go mod tidy could not fetch github.com/redis/go-redis/v9 (see $EXAMPLES_RUN/go-client.log)"
    fi
fi

# Jedis: from JEDIS_CLASSPATH, or fetched from Maven Central with the pom.
jedis_cp="${JEDIS_CLASSPATH:-}"
jedis_why="no Jedis jar: Debian does not package Jedis, and Maven (mvn) is not installed"
if [ -z "$jedis_cp" ] && command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
    jedis_why="no Jedis jar: Debian does not package Jedis, and Maven Central is not reachable (see $EXAMPLES_RUN/jedis-mvn.log)"
    jars="$EXAMPLES_RUN/jedis-jars"
    if timeout 300 mvn -B -q -Dmaven.repo.local="$EXAMPLES_RUN/m2" -f "$CLIENTS/java/pom.xml" \
        dependency:copy-dependencies -DoutputDirectory="$jars" >"$EXAMPLES_RUN/jedis-mvn.log" 2>&1; then
        jedis_cp="$jars/*"
    fi
fi
if [ -z "$jedis_cp" ]; then
    skip Jedis "$jedis_why; JEDIS_CLASSPATH can name the jars"
elif ! command -v java >/dev/null 2>&1; then
    skip Jedis "java is not installed"
else
    try Jedis java -cp "$jedis_cp" "$CLIENTS/java/CampaignJedis.java"
fi

echo "clients: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
