#!/usr/bin/env bash
# The queue consumer example, end to end with one command: starts PostgreSQL
# and redis-server with the module (scripts/start.sh, own ports and run
# directory), installs redis-py into a venv, runs the crash test
# (test_consumer.py: consumers killed between ADD and XACK, restarted, and
# checked against the stream and PostgreSQL's rows), and stops the servers.
#
#   CAMPAIGN_REDIS_PORT (default: first free from 16392), CAMPAIGN_PG_PORT (default: first free from 15434)
#
# To run the consumer by hand against scripts/start.sh's servers:
#   python3 examples/queue-consumer/consumer.py --redis-url redis://127.0.0.1:6390/0 --consumer worker-1
#   redis-cli -p 6390 XADD enrollments '*' campaign spring-sale user user:42
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

example_init queue-consumer 16392 15434
example_python
example_start_servers

REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" PSQL="$PG_BIN/psql" PG_PORT="$PG_PORT" WORK_DIR="$RUN_DIR" \
    "$PYTHON" "$EXAMPLES_DIR/queue-consumer/test_consumer.py"
