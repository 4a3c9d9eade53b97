#!/bin/sh
# Every benchmark in one command: builds the module, makes sure matplotlib
# (for the membership chart) is importable, then runs the benchmarks, each
# of which starts its own redis-server and PostgreSQL and writes its figures
# to docs/bench/. With an argument, only that benchmark:
#   bench/run.sh [membership|write-behind|journal|rebuild|cluster] [extra arguments...]
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
which="${1:-all}"
[ "$#" -gt 0 ] && shift
case "$which" in
    membership) exec "$PYTHON" bench/membership.py "$@" ;;
    write-behind) exec "$PYTHON" bench/write_behind.py "$@" ;;
    journal) exec "$PYTHON" bench/journal.py "$@" ;;
    rebuild) exec "$PYTHON" bench/rebuild.py "$@" ;;
    cluster) exec "$PYTHON" bench/cluster.py "$@" ;;
    all)
        "$PYTHON" bench/membership.py "$@"
        "$PYTHON" bench/write_behind.py
        "$PYTHON" bench/journal.py
        "$PYTHON" bench/rebuild.py
        "$PYTHON" bench/cluster.py
        ;;
    *) echo "usage: bench/run.sh [membership|write-behind|journal|rebuild|cluster] [args...]" >&2; exit 2 ;;
esac
