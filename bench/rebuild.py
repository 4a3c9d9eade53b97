"""Rebuild benchmark: CAMPAIGN.REBUILD of 1M members, the longest stall a
concurrent HAS client sees meanwhile, and HAS latency during a rebuild
against idle, side by side in one run.

    python3 bench/rebuild.py [--members 1000000] [--rounds 3]
"""

import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import Postgres, RedisServer, arguments  # noqa: E402

TABLE = "campaign_members"


def has_latencies(server, stop, out, campaign="probe"):
    """Sequential HAS calls until `stop` is set; appends each latency (s).
    The probe campaign is not the one rebuilt: a stall of the main thread
    shows in its latency, a wait on the rebuild (read-through) does not."""
    redis = server.client()
    while not stop.is_set():
        started = time.perf_counter()
        assert redis.call("CAMPAIGN.HAS", campaign, "user-7") in (0, 1)
        out.append(time.perf_counter() - started)


def timed_rebuild(server):
    """REBUILD with a HAS client running; returns (seconds, HAS latencies)."""
    latencies, stop = [], threading.Event()
    reader = threading.Thread(target=has_latencies, args=(server, stop, latencies))
    reader.start()
    time.sleep(0.2)
    latencies.clear()
    redis = server.client()
    started = time.perf_counter()
    loaded = redis.call("CAMPAIGN.REBUILD", "big")
    elapsed = time.perf_counter() - started
    stop.set()
    reader.join()
    return loaded, elapsed, latencies


def idle_latencies(server, seconds):
    latencies, stop = [], threading.Event()
    reader = threading.Thread(target=has_latencies, args=(server, stop, latencies))
    reader.start()
    time.sleep(seconds)
    stop.set()
    reader.join()
    return latencies


def p(latencies, q):
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main():
    options = arguments(__doc__, "rebuild.md")
    total = options.members

    postgres = Postgres()
    server = None
    results = {"cold": [], "warm": []}
    try:
        postgres.psql("CREATE TABLE %s (campaign text NOT NULL, member text NOT NULL, "
                      "added_at timestamptz NOT NULL DEFAULT now(), "
                      "PRIMARY KEY (campaign, member))" % TABLE)
        rows = "".join("big\tuser-%d\n" % i for i in range(total)).encode()
        postgres.psql("COPY %s (campaign, member) FROM STDIN" % TABLE, stdin=rows)
        postgres.psql("VACUUM ANALYZE %s" % TABLE)
        server = RedisServer("database-url", postgres.url)
        redis = server.client()
        redis.call("CAMPAIGN.ADD", "probe", *["user-%d" % i for i in range(1000)])
        for _ in range(options.rounds):
            # Cold: the key is missing, every member is new (sent whole).
            redis.call("DEL", "big")
            time.sleep(0.5)
            loaded, seconds, latencies = timed_rebuild(server)
            assert loaded == total, loaded
            results["cold"].append((seconds, latencies))
            # Warm: the cache already matches (an empty diff).
            loaded, seconds, latencies = timed_rebuild(server)
            assert loaded == total, loaded
            results["warm"].append((seconds, latencies))
        idle = idle_latencies(server, 2.0)
    finally:
        if server:
            server.stop()
        postgres.stop()

    lines = [
        "| %d members, median of %d rounds | REBUILD s | longest HAS ms | HAS p99 ms | HAS p50 ms |"
        % (total, options.rounds),
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("cold", "key missing (every member new)"),
                        ("warm", "cache already equal (empty diff)")):
        seconds = statistics.median(r[0] for r in results[name])
        longest = statistics.median(max(r[1]) * 1000 for r in results[name])
        p99 = statistics.median(p(r[1], 0.99) for r in results[name])
        p50 = statistics.median(p(r[1], 0.50) for r in results[name])
        lines.append("| rebuild, %s | %.2f | %.2f | %.3f | %.3f |" % (label, seconds, longest, p99, p50))
    lines.append("| idle, no rebuild (2 s) | - | %.2f | %.3f | %.3f |"
                 % (max(idle) * 1000, p(idle, 0.99), p(idle, 0.50)))
    lines.append("")
    lines.append("Goals: REBUILD of 1M <= 1.0 s; longest main-thread stall <= 5 ms "
                 "(the longest HAS round trip includes the client's own scheduling). "
                 "This server has no AOF and no replica, so the swap sends nothing on.")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w") as out:
        out.write("# Rebuild benchmark\n\n`python3 bench/rebuild.py`\n\n" + table + "\n")


if __name__ == "__main__":
    main()
