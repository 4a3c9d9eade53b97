#!/usr/bin/env bash
# Tests monitoring/ end to end (called from .ci/run):
#   1. promtool check rules on alerts.yml, and promtool test rules on
#      alerts-test.yml (each alert fires on its series, after its `for`);
#   2. a PostgreSQL and a redis-server with the module on free ports
#      (scripts/start.sh, in .run/examples/monitoring), Debian's
#      prometheus-redis-exporter with -script campaign-status.lua on a free
#      port, and check_metrics.py: every numeric CAMPAIGN.STATUS figure is in
#      /metrics with its value, with the database connected (after flushes,
#      a rejected row, a rebuild) and then disconnected (changes pending,
#      flush errors).
# Installs prometheus-redis-exporter and prometheus (promtool) with apt-get
# where missing. Stops what it started, pass or fail.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../examples/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../examples/lib.sh"

MON_DIR="$REPO_ROOT/monitoring"

missing=()
command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

log "monitoring: promtool check rules / test rules"
promtool check rules "$MON_DIR/alerts.yml"
(cd "$MON_DIR" && promtool test rules alerts-test.yml)
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$MON_DIR/grafana-dashboard.json" ||
    die "grafana-dashboard.json is not valid JSON"

example_init monitoring 17600 17650
example_start_servers

EXPORTER_PORT="$(free_port_from 17630)"
EXPORTER_LOG="$RUN_DIR/exporter.log"
log "monitoring: prometheus-redis-exporter on 127.0.0.1:$EXPORTER_PORT ($(prometheus-redis-exporter -version 2>&1 | sed -n 's/.*Exporter \([^ ]*\).*/\1/p'))"
prometheus-redis-exporter \
    -redis.addr "redis://127.0.0.1:$REDIS_PORT" \
    -script "$MON_DIR/campaign-status.lua" \
    -web.listen-address "127.0.0.1:$EXPORTER_PORT" >"$EXPORTER_LOG" 2>&1 &
EXAMPLE_PIDS+=("$!")
METRICS_URL="http://127.0.0.1:$EXPORTER_PORT/metrics"
for _ in $(seq 1 100); do
    curl -fs "$METRICS_URL" 2>/dev/null | grep -q '^redis_up 1' && break
    sleep 0.1
done
curl -fs "$METRICS_URL" | grep -q '^redis_up 1' || die "the exporter does not answer; see $EXPORTER_LOG"

# status FIELD: one CAMPAIGN.STATUS figure.
status() {
    rcli CAMPAIGN.STATUS | awk -v f="$1" 'NR % 2 == 1 && $0 == f { getline; print; exit }'
}

log "monitoring: database connected (flushed rows, a rejected row, a rebuild)"
expect_eq "ADD" 3 "$(rcli CAMPAIGN.ADD mon-a 1 2 3)"
expect_eq "FLUSH" 3 "$(rcli CAMPAIGN.FLUSH 20000)"
pg -c "ALTER TABLE campaign_members ADD CONSTRAINT monitoring_refuses CHECK (member <> 'refused')"
expect_eq "ADD of a row the database refuses" 2 "$(rcli CAMPAIGN.ADD mon-a refused 4)"
rcli CAMPAIGN.FLUSH 20000 >/dev/null
expect_eq "STATUS rejected" 1 "$(status rejected)"
expect_eq "REBUILD (the refused row is not in the database)" 4 "$(rcli CAMPAIGN.REBUILD mon-a)"
python3 "$MON_DIR/check_metrics.py" "$REDIS_PORT" "$METRICS_URL" \
    campaign_database_connected=1 campaign_flushed=5 campaign_rejected=1 'campaign_loads_done>0' campaign_pending=0

log "monitoring: database disconnected (changes pending, flush errors)"
closed_port="$(free_port_from 17680)"
rcli CONFIG SET campaign.database-url "host=127.0.0.1 port=$closed_port dbname=campaign user=postgres connect_timeout=1" >/dev/null
expect_eq "ADD while disconnected" 2 "$(rcli CAMPAIGN.ADD mon-a 5 6)"
for _ in $(seq 1 150); do
    [ "$(status database)" = disconnected ] && [ "$(status flush-errors)" -gt 0 ] && break
    sleep 0.1
done
expect_eq "STATUS database" disconnected "$(status database)"
python3 "$MON_DIR/check_metrics.py" "$REDIS_PORT" "$METRICS_URL" \
    campaign_database_connected=0 campaign_database_configured=1 campaign_pending=2 \
    'campaign_flush_errors>0' campaign_last_error_set=1

log "monitoring: database back, the backlog drains"
rcli CONFIG SET campaign.database-url "host=127.0.0.1 port=$PG_PORT dbname=campaign user=postgres connect_timeout=5" >/dev/null
expect_eq "FLUSH after the outage" 2 "$(rcli CAMPAIGN.FLUSH 20000)"
expect_eq "rows in PostgreSQL" "1 2 3 4 5 6" "$(pg -c "SELECT string_agg(member, ' ' ORDER BY member) FROM campaign_members WHERE campaign = 'mon-a'")"
python3 "$MON_DIR/check_metrics.py" "$REDIS_PORT" "$METRICS_URL" campaign_database_connected=1 campaign_pending=0
log "monitoring: all checks passed"
