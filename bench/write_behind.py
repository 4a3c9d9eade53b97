"""Write-behind benchmark: flushing 1M pending journal entries against a raw
COPY of the same rows into the same table, side by side in one run, then
flushing 1M removals of those rows, plus the journal's memory per pending
entry.

    python3 bench/write_behind.py [--members 1000000] [--rounds 3]
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import Postgres, RedisServer, arguments, settled_used_memory  # noqa: E402

CAMPAIGNS = 100
TABLE = "campaign_members"


def rows(total):
    per = total // CAMPAIGNS
    for c in range(CAMPAIGNS):
        campaign = "campaign-%d" % c
        yield campaign, ["user-%d" % (c * per + i) for i in range(per)]


def load_journal(redis, total):
    """ADDs every row in calls of 10k members; returns used_memory growth."""
    commands = []
    for campaign, members in rows(total):
        for start in range(0, len(members), 10_000):
            commands.append(["CAMPAIGN.ADD", campaign] + members[start:start + 10_000])
    for start in range(0, len(commands), 10):
        redis.pipeline(commands[start:start + 10])


def remove_journal(redis, total):
    """REMs every row in calls of 10k members."""
    commands = []
    for campaign, members in rows(total):
        for start in range(0, len(members), 10_000):
            commands.append(["CAMPAIGN.REM", campaign] + members[start:start + 10_000])
    for start in range(0, len(commands), 10):
        redis.pipeline(commands[start:start + 10])


def copy_text(total):
    """The rows as the module writes them: with a version each (consecutive
    numbers above a hybrid-logical-clock base, as one node issues them)."""
    base = int(time.time() * 1000) << 21
    return "".join(
        "%s\t%s\t%d\n" % (campaign, member, base + index)
        for index, (campaign, member) in enumerate(
            (campaign, member) for campaign, members in rows(total) for member in members)
    ).encode()


def main():
    options = arguments(__doc__, "write-behind.md")
    total = options.members

    postgres = Postgres()
    data = copy_text(total)
    flush_times, copy_times, journal_bytes, remove_times = [], [], [], []
    try:
        for round_number in range(options.rounds):
            # Raw COPY of the same rows (with their versions) into the empty
            # table as the module creates it.
            postgres.psql("DROP TABLE IF EXISTS %s; CREATE TABLE %s (campaign text NOT NULL, "
                          "member text NOT NULL, added_at timestamptz NOT NULL DEFAULT now(), "
                          "version bigint, PRIMARY KEY (campaign, member))" % (TABLE, TABLE))
            started = time.perf_counter()
            postgres.psql("COPY %s (campaign, member, version) FROM STDIN" % TABLE, stdin=data)
            copy_times.append(time.perf_counter() - started)
            postgres.psql("TRUNCATE %s" % TABLE)

            # The module: journal with no database, then connect and FLUSH.
            server = RedisServer()
            try:
                redis = server.client()
                baseline = settled_used_memory(redis)
                load_journal(redis, total)
                assert redis.status()["pending"] == total
                journal_bytes.append(settled_used_memory(redis) - baseline)
                started = time.perf_counter()
                redis.call("CONFIG", "SET", "campaign.database-url", postgres.url)
                waited = redis.call("CAMPAIGN.FLUSH", "600000")
                flush_times.append(time.perf_counter() - started)
                assert waited == total, waited
                # Removals of every row, journaled with no database, then
                # flushed the same way.
                redis.call("CONFIG", "SET", "campaign.database-url", "")
                remove_journal(redis, total)
                assert redis.status()["pending"] == total
                started = time.perf_counter()
                redis.call("CONFIG", "SET", "campaign.database-url", postgres.url)
                redis.call("CAMPAIGN.FLUSH", "600000")
                remove_times.append(time.perf_counter() - started)
            finally:
                server.stop()
            stored = int(postgres.psql("SELECT count(*) FROM %s" % TABLE))
            assert stored == 0, stored
            markers = int(postgres.psql("SELECT count(*) FROM %s_removed" % TABLE))
            assert markers == total, markers
            postgres.psql("DROP TABLE %s_removed" % TABLE)
            print("round %d: copy %.2f s, flush %.2f s, removals %.2f s" % (
                round_number + 1, copy_times[-1], flush_times[-1], remove_times[-1]),
                file=sys.stderr)
    finally:
        postgres.stop()

    copy_s = statistics.median(copy_times)
    flush_s = statistics.median(flush_times)
    remove_s = statistics.median(remove_times)
    per_entry = statistics.median(journal_bytes) / total
    table = "\n".join([
        "| %d rows, median of %d rounds | seconds | rows/s |" % (total, options.rounds),
        "|---|---:|---:|",
        "| raw `COPY` into the table | %.2f | %.0f |" % (copy_s, total / copy_s),
        "| module flush (journal to table) | %.2f | %.0f |" % (flush_s, total / flush_s),
        "| **flush / COPY throughput** | **%.2f** | goal >= 0.6 |" % (copy_s / flush_s),
        "| module flush of %d removals of those rows | %.2f | %.0f |" % (
            total, remove_s, total / remove_s),
        "| **removals / adds flush time** | **%.2f** | goal <= 2 |" % (remove_s / flush_s),
        "",
        "Journal memory: %.0f bytes per pending entry (used_memory with %d entries "
        "pending and no sets)." % (per_entry, total),
    ])
    print(table)
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w") as out:
        out.write("# Write-behind benchmark\n\n`python3 bench/write_behind.py`\n\n")
        out.write(table + "\n\n" + machine() + "\n")


def machine():
    import platform
    import subprocess
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.split()[2]
    return "Machine: %s, %d cores, Python %s, redis-server %s." % (
        platform.platform(), os.cpu_count(), platform.python_version(), redis_version)


if __name__ == "__main__":
    main()
