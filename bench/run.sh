#!/bin/sh
# The membership benchmark in one command: builds the module, makes sure
# matplotlib (for the chart) is importable, then runs bench/membership.py,
# which starts its own redis-server and PostgreSQL and writes
# docs/bench/membership.{md,png,json}. Extra arguments go to the script
# (e.g. --quick).
set -eu
cd "$(dirname "$0")/.."
cargo build --release
PYTHON=python3
if ! "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
    # A user install first; where pip refuses (externally managed Python),
    # a virtual environment under target/.
    if ! "$PYTHON" -m pip install --quiet --user matplotlib 2>/dev/null \
        && ! "$PYTHON" -m pip install --quiet matplotlib 2>/dev/null; then
        "$PYTHON" -m venv --system-site-packages target/bench-venv
        target/bench-venv/bin/pip install --quiet matplotlib
        PYTHON=target/bench-venv/bin/python3
    fi
fi
exec "$PYTHON" bench/membership.py "$@"
