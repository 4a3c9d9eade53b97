"""Journal benchmark: what a pending change costs and what taking a batch
costs the server, beside the set's own figures, in one run.

For 1,000,000 8-digit numeric ids and 1,000,000 UUIDs (v4, lowercase), each
at flush-batch-size 10000 and 1000000, on a fresh redis-server:

0. connect the flusher and let it flush one batch (10,000 members of
   another campaign, FLUSH, DEL), then empty `campaign.database-url` so
   the flusher keeps its connection but waits: the baseline;
1. ADD the members to one campaign in calls of 10,000: `used_memory`
   grows by the set plus 1M pending journal entries;
2. SAVE: the RDB with 1M pending;
3. set `campaign.database-url`, CAMPAIGN.FLUSH: `used_memory` after the
   flush, and STATUS `longest-batch-take-us` / `longest-lock-hold-us` (the
   longest time the flusher held the Redis lock taking a batch out, and at
   all);
4. SAVE again: the set's own RDB (empty journal);
5. DEL the campaign: what the set alone took is what this gives back.

Then one-member CAMPAIGN.ADD against SADD with redis-benchmark -P 16, side
by side on one server (no database), in pairs that alternate which runs
first; members are 13-digit canonical ids ("1" before redis-benchmark's
12-digit random).

    python3 bench/journal.py [--members 1000000] [--rounds 5]
"""

import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import REPO, Postgres, RedisServer, arguments, settled_used_memory  # noqa: E402

CAMPAIGN = "c"
PER_CALL = 10_000


def members(kind, total):
    rng = random.Random(7)
    if kind == "ids":
        return [str(m) for m in rng.sample(range(10_000_000, 100_000_000), total)]
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(total)]


def bulk_add(redis, values):
    commands = [["CAMPAIGN.ADD", CAMPAIGN] + values[i:i + PER_CALL]
                for i in range(0, len(values), PER_CALL)]
    for i in range(0, len(commands), 10):
        redis.pipeline(commands[i:i + 10])


def save(server, redis):
    redis.call("SAVE")
    return os.path.getsize(os.path.join(server.dir, "dump.rdb"))


def journal_round(postgres, kind, values, batch_size):
    postgres.psql("DROP TABLE IF EXISTS campaign_members, campaign_members_removed")
    server = RedisServer("flush-batch-size", batch_size)
    try:
        redis = server.client()
        # The baseline is a server whose flusher is connected (as in
        # production): the connection's own memory is not the journal's.
        # With the URL emptied the flusher keeps its connection but waits.
        redis.call("CONFIG", "SET", "campaign.database-url", postgres.url)
        redis.call("CAMPAIGN.ADD", "warm-up", *[str(i) for i in range(PER_CALL)])
        redis.call("CAMPAIGN.FLUSH", "60000")
        redis.call("DEL", "warm-up")
        redis.call("CONFIG", "SET", "campaign.database-url", "")
        base = settled_used_memory(redis)
        bulk_add(redis, values)
        total = len(values)
        assert int(redis.status()["pending"]) == total
        loaded = settled_used_memory(redis)
        rdb_pending = save(server, redis)
        redis.call("CONFIG", "SET", "campaign.database-url", postgres.url)
        started = time.perf_counter()
        waited = redis.call("CAMPAIGN.FLUSH", "600000")
        flush_s = time.perf_counter() - started
        assert waited == total, waited
        status = redis.status()
        flushed = settled_used_memory(redis)
        rdb_set = save(server, redis)
        redis.call("DEL", CAMPAIGN)
        emptied = settled_used_memory(redis)
    finally:
        server.stop()
    stored = int(postgres.psql(
        "SELECT count(*) FROM campaign_members WHERE campaign = '%s'" % CAMPAIGN))
    assert stored == total, stored
    set_bytes = flushed - emptied
    journal_bytes = loaded - base - set_bytes
    return {
        "kind": kind,
        "batch": batch_size,
        "set_per_member": set_bytes / total,
        "journal_per_entry": journal_bytes / total,
        "after_flush_over_set": (flushed - base) / set_bytes,
        "after_flush_bytes": flushed - base,
        "set_bytes": set_bytes,
        "left_after_del": emptied - base,
        "rdb_pending": rdb_pending,
        "rdb_set": rdb_set,
        "rdb_budget": 1.5 * rdb_set + 16 * total,
        "take_us": int(status["longest-batch-take-us"]),
        "hold_us": int(status["longest-lock-hold-us"]),
        "flush_s": flush_s,
    }


def benchmark(port, command, requests):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-P", "16", "-c", "50", "--threads", "1",
         "-n", str(requests), "-r", "10000000", "-q"] + command,
        capture_output=True, text=True, check=True).stdout
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])


def usec_per_call(redis, command):
    stats = redis.info("commandstats").get("cmdstat_" + command, "")
    match = re.search(r"usec_per_call=([\d.]+)", stats)
    return float(match.group(1)) if match else float("nan")


def add_vs_sadd(rounds, requests):
    pairs = []
    for round_number in range(rounds):
        server = RedisServer()
        try:
            redis = server.client()
            # Alternating which goes first evens out drift in the load of
            # the (shared) machine.
            if round_number % 2 == 0:
                add = benchmark(server.port, ["CAMPAIGN.ADD", "c", "1__rand_int__"], requests)
                sadd = benchmark(server.port, ["SADD", "s", "1__rand_int__"], requests)
            else:
                sadd = benchmark(server.port, ["SADD", "s", "1__rand_int__"], requests)
                add = benchmark(server.port, ["CAMPAIGN.ADD", "c", "1__rand_int__"], requests)
            pairs.append((add, sadd, usec_per_call(redis, "campaign.add"),
                          usec_per_call(redis, "sadd")))
        finally:
            server.stop()
        print("ADD %.0f/s, SADD %.0f/s (%.2fx); usec/call %.2f vs %.2f" % (
            pairs[-1][0], pairs[-1][1], pairs[-1][0] / pairs[-1][1], pairs[-1][2],
            pairs[-1][3]), file=sys.stderr)
    return pairs


def machine():
    import platform

    def first_line(command):
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    redis_version = first_line(["redis-server", "--version"]).split()[2]
    commit = first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    return ("Machine: %s, %d cores, Python %s, redis-server %s, %s, module at commit %s. "
            "The machine is shared: single runs vary by 10-20%%." % (
                platform.platform(), os.cpu_count(), platform.python_version(),
                redis_version, first_line(["psql", "--version"]), commit))


def yes(met):
    return "**yes**" if met else "**NO**"


def main():
    options = arguments(__doc__, "journal.md")
    total = options.members
    postgres = Postgres()
    results = []
    try:
        for kind in ["ids", "uuids"]:
            values = members(kind, total)
            for batch in [10_000, 1_000_000]:
                results.append(journal_round(postgres, kind, values, batch))
                print(results[-1], file=sys.stderr)
    finally:
        postgres.stop()
    pairs = add_vs_sadd(options.rounds, 1_000_000)

    names = {"ids": "8-digit numeric ids", "uuids": "UUIDs (v4, lowercase)"}
    goals = {"ids": 24, "uuids": 48}
    lines = [
        "| %d members, one campaign, calls of 10k | flush-batch-size | set B/member "
        "| journal B/pending entry (goal) | used_memory after FLUSH / set alone (goal <= 1.10) "
        "| RDB with 1M pending / set's RDB | RDB budget 1.5x set + 16 B/entry "
        "| longest batch take us | longest lock hold us | FLUSH s |" % total,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            "| %s | %d | %.1f | %.1f (<= %d) %s | %.3f (%+.1f MB) %s | %.1f MB / %.1f MB "
            "| %.1f MB %s | %d %s | %d | %.1f |" % (
                names[r["kind"]], r["batch"], r["set_per_member"], r["journal_per_entry"],
                goals[r["kind"]], yes(r["journal_per_entry"] <= goals[r["kind"]]),
                r["after_flush_over_set"], (r["after_flush_bytes"] - r["set_bytes"]) / 1e6,
                yes(r["after_flush_over_set"] <= 1.10),
                r["rdb_pending"] / 1e6, r["rdb_set"] / 1e6, r["rdb_budget"] / 1e6,
                yes(r["rdb_pending"] <= r["rdb_budget"]), r["take_us"],
                yes(r["take_us"] <= 1000), r["hold_us"], r["flush_s"]))
    ratios = [a / s for a, s, _, _ in pairs]
    add_med = statistics.median(a for a, _, _, _ in pairs)
    sadd_med = statistics.median(s for _, s, _, _ in pairs)
    lines += [
        "",
        "| one-member write, redis-benchmark -P 16 -c 50 --threads 1, 1M requests, "
        "%d pairs | req/s (median) | in-server usec/call (median) |" % len(pairs),
        "|---|---:|---:|",
        "| `CAMPAIGN.ADD c 1__rand_int__` | %.0f | %.2f |" % (
            add_med, statistics.median(p[2] for p in pairs)),
        "| `SADD s 1__rand_int__` | %.0f | %.2f |" % (
            sadd_med, statistics.median(p[3] for p in pairs)),
        "| **ADD / SADD (median of the pair ratios)** | **%.2fx** %s | |" % (
            statistics.median(ratios), yes(statistics.median(ratios) >= 1.0)),
        "",
        "Pair ratios: %s." % ", ".join("%.2f" % r for r in ratios),
    ]
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w") as out:
        out.write("# Journal benchmark\n\n`bench/run.sh journal` "
                  "(`python3 bench/journal.py --members %d --rounds %d`)\n\n" % (
                      total, options.rounds))
        out.write(table + "\n\n" + machine() + "\n\n## Method\n\n" + method() + "\n")


def method():
    """The docstring above, from its second paragraph, as Markdown text."""
    text = __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0]
    return text + (
        "\n\nBytes per member of the set are what DEL gives back; bytes per "
        "pending entry are the growth of `used_memory` over the baseline "
        "less the set. \"After FLUSH\" is `used_memory` over the baseline "
        "with the set still there and the journal drained, divided by the "
        "set alone. The RDB budget is the goal: 1.5 times the set's own RDB "
        "plus 16 bytes per pending entry.")


if __name__ == "__main__":
    main()
