"""Write-behind benchmark: flushing 1M pending journal entries against a raw
COPY of the same rows into the same table, side by side in one run, then
flushing 1M removals of those rows (with the markers on a second connection,
then again on one connection), then removals of one member in five of each
campaign, plus the journal's memory per pending entry.

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


def remove_journal(redis, total, every=1):
    """REMs every `every`-th row of each campaign in calls of 10k members;
    returns how many."""
    commands = []
    for campaign, members in rows(total):
        members = members[::every]
        for start in range(0, len(members), 10_000):
            commands.append(["CAMPAIGN.REM", campaign] + members[start:start + 10_000])
    for start in range(0, len(commands), 10):
        redis.pipeline(commands[start:start + 10])
    return sum(len(command) - 2 for command in commands)


def timed_flush(redis, postgres):
    """Connects the journaled server to the database; seconds until FLUSH
    has committed everything."""
    started = time.perf_counter()
    redis.call("CONFIG", "SET", "campaign.database-url", postgres.url)
    redis.call("CAMPAIGN.FLUSH", "600000")
    return time.perf_counter() - started


def assert_stored(postgres, rows_left, markers):
    stored = int(postgres.psql("SELECT count(*) FROM %s" % TABLE))
    assert stored == rows_left, (stored, rows_left)
    marked = int(postgres.psql("SELECT count(*) FROM %s_removed" % TABLE))
    assert marked == markers, (marked, markers)


def refill(redis, postgres, total):
    """Journals and flushes every row again, with the markers cleared, so
    the next removals start from the state the first ones did."""
    redis.call("CONFIG", "SET", "campaign.database-url", "")
    load_journal(redis, total)
    timed_flush(redis, postgres)
    postgres.psql("TRUNCATE %s_removed" % TABLE)
    redis.call("CONFIG", "SET", "campaign.database-url", "")


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
    single_times, thin_times = [], []
    thin = total
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
                remove_times.append(timed_flush(redis, postgres))
                assert_stored(postgres, 0, total)
                # The same on one connection (with max-connections 2 the
                # flusher never gets a second one).
                refill(redis, postgres, total)
                redis.call("CONFIG", "SET", "campaign.max-connections", "2")
                remove_journal(redis, total)
                single_times.append(timed_flush(redis, postgres))
                assert_stored(postgres, 0, total)
                redis.call("CONFIG", "SET", "campaign.max-connections", "6")
                # One member in five of every campaign: too few for a
                # campaign's own deletion, so one probe per member.
                refill(redis, postgres, total)
                thin = remove_journal(redis, total, every=5)
                thin_times.append(timed_flush(redis, postgres))
                assert_stored(postgres, total - thin, thin)
            finally:
                server.stop()
            postgres.psql("DROP TABLE %s_removed" % TABLE)
            print("round %d: copy %.2f s, flush %.2f s, removals %.2f s, on one connection "
                  "%.2f s, %d thin removals %.2f s" % (
                      round_number + 1, copy_times[-1], flush_times[-1], remove_times[-1],
                      single_times[-1], thin, thin_times[-1]), file=sys.stderr)
    finally:
        postgres.stop()

    copy_s = statistics.median(copy_times)
    flush_s = statistics.median(flush_times)
    remove_s = statistics.median(remove_times)
    single_s = statistics.median(single_times)
    thin_s = statistics.median(thin_times)
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
        "| the same removals with one connection (`max-connections 2`) | %.2f | %.0f |" % (
            single_s, total / single_s),
        "| removals / adds flush time, one connection | %.2f | |" % (single_s / flush_s),
        "| module flush of %d removals, one member in five of each campaign | %.2f | %.0f |" % (
            thin, thin_s, thin / thin_s),
        "| thin removals / adds, per change | %.2f | |" % ((thin_s / thin) / (flush_s / total)),
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
