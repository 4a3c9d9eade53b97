"""Scale-out in Redis Cluster, side by side in one run: CAMPAIGN.ADD and
CAMPAIGN.HAS throughput of clusters of 1, 2 and 3 primaries through
`redis-benchmark --cluster` (one campaign per primary, `{tag}` routing),
and the write-behind throughput into one PostgreSQL from 3 primaries
against 1 (the same rows, each primary flushing its own journal at once).

Every server runs on this one machine: with 2 cores, a second primary
competes with the first and with redis-benchmark for the same CPUs, so the
figures show what the module adds per primary here, not what separate
hosts would give."""

import os
import re
import statistics
import subprocess
import sys
import threading
import time

from servers import Postgres, RedisServer, arguments, free_cluster_port

REQUESTS = 1_000_000
SLOTS = 16384


class Cluster:
    """`primaries` cluster-enabled servers with the module, slots split
    evenly (CLUSTER ADDSLOTSRANGE + MEET: redis-cli --cluster create
    refuses fewer than 3 primaries)."""

    def __init__(self, primaries, *module_args):
        self.nodes = [
            RedisServer(*module_args, port=free_cluster_port(),
                        extra=["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            for _ in range(primaries)
        ]
        per = SLOTS // primaries
        for index, node in enumerate(self.nodes):
            first = index * per
            last = SLOTS - 1 if index == primaries - 1 else first + per - 1
            node.client().call("CLUSTER", "ADDSLOTSRANGE", first, last)
        seed = self.nodes[0].client()
        for node in self.nodes[1:]:
            seed.call("CLUSTER", "MEET", "127.0.0.1", node.port)
        deadline = time.time() + 60
        while not all(self.ready(node) for node in self.nodes):
            if time.time() > deadline:
                raise RuntimeError("the cluster did not come up")
            time.sleep(0.2)

    def ready(self, node):
        client = node.client()
        info = client.call("CLUSTER", "INFO")
        known = int(re.search(r"cluster_known_nodes:(\d+)", info).group(1))
        return "cluster_state:ok" in info and known == len(self.nodes)

    def stop(self):
        for node in self.nodes:
            node.stop()


def redis_benchmark(cluster, *command):
    """Requests per second of `command` through redis-benchmark --cluster
    (one thread per primary, 50 clients per thread, pipeline 16)."""
    # redis-benchmark refuses a one-node cluster: one primary is driven
    # directly, by one thread, as --cluster drives each primary.
    mode = ["--cluster"] if len(cluster.nodes) > 1 else ["--threads", "1"]
    args = ["redis-benchmark"] + mode + ["-h", "127.0.0.1", "-p",
            str(cluster.nodes[0].port), "-n", str(REQUESTS), "-r", "100000000",
            "-c", "50", "-P", "16", "--csv"] + list(command)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = [field.strip('"') for field in line.split(",")]
        if len(fields) > 1 and fields[0] != "test":
            return float(fields[1])
    raise RuntimeError("no figure in redis-benchmark output: %r" % out)


def hot_path(primaries, rounds):
    adds, hases = [], []
    for _ in range(rounds):
        cluster = Cluster(primaries)
        try:
            # ADD fills each primary's campaign; HAS then looks members up.
            adds.append(redis_benchmark(cluster, "CAMPAIGN.ADD", "c:{tag}", "__rand_int__"))
            hases.append(redis_benchmark(cluster, "CAMPAIGN.HAS", "c:{tag}", "__rand_int__"))
        finally:
            cluster.stop()
    return statistics.median(adds), statistics.median(hases)


def campaign_on(node, prefix):
    """A campaign name whose slot `node` serves (no MOVED for it)."""
    client = node.client()
    for index in range(100_000):
        name = "%s-%d" % (prefix, index)
        try:
            client.call("CAMPAIGN.HAS", name, "x")
            return name
        except RuntimeError as error:
            if not str(error).startswith("MOVED"):
                raise
    raise RuntimeError("no campaign name for node %d" % node.port)


# The tables as the module creates them (SPEC section 4), made before the
# clock starts so that no node spends the measured time creating them.
TABLES = """
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign text NOT NULL, member text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(), version bigint,
    PRIMARY KEY (campaign, member));
CREATE TABLE IF NOT EXISTS campaign_members_removed (
    campaign text NOT NULL, member text NOT NULL, version bigint NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (campaign, member));
CREATE INDEX IF NOT EXISTS campaign_members_removed_version
    ON campaign_members_removed (version);
TRUNCATE campaign_members, campaign_members_removed;
"""


def write_behind(primaries, total, postgres):
    """Seconds to flush `total` journal entries, spread over the
    primaries, into one PostgreSQL: the journals are filled with no
    database, then every primary gets the URL and FLUSHes at once."""
    postgres.psql(TABLES)
    cluster = Cluster(primaries)
    try:
        share = total // primaries
        for number, node in enumerate(cluster.nodes):
            client = node.client()
            campaign = campaign_on(node, "wb%d" % number)
            commands = []
            for start in range(0, share, 10_000):
                members = ["u%d-%d" % (number, i) for i in range(start, min(start + 10_000, share))]
                commands.append(["CAMPAIGN.ADD", campaign] + members)
            for start in range(0, len(commands), 10):
                client.pipeline(commands[start:start + 10])
        done = []

        def flush(node):
            client = node.client()
            client.call("CONFIG", "SET", "campaign.database-url", postgres.url)
            done.append(client.call("CAMPAIGN.FLUSH", "600000"))

        started = time.perf_counter()
        threads = [threading.Thread(target=flush, args=(node,)) for node in cluster.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        cluster.stop()
    stored = int(postgres.psql("SELECT count(*) FROM campaign_members"))
    assert stored == share * primaries, (stored, share * primaries)
    return seconds, stored


def main():
    options = arguments(__doc__, "cluster.md")
    rounds = options.rounds
    rows = []
    for primaries in (1, 2, 3):
        add_rps, has_rps = hot_path(primaries, rounds)
        rows.append((primaries, add_rps, has_rps))
        print("%d primaries: ADD %.0f/s, HAS %.0f/s" % (primaries, add_rps, has_rps),
              file=sys.stderr)

    postgres = Postgres()
    flushes = {1: [], 3: []}
    try:
        for _ in range(rounds):
            for primaries in (1, 3):
                seconds, stored = write_behind(primaries, options.members, postgres)
                flushes[primaries].append(stored / seconds)
                print("write-behind from %d primaries: %.0f rows/s" % (primaries, stored / seconds),
                      file=sys.stderr)
    finally:
        postgres.stop()
    one, three = (statistics.median(flushes[n]) for n in (1, 3))

    base_add, base_has = rows[0][1], rows[0][2]
    lines = [
        "| primaries | CAMPAIGN.ADD req/s | vs 1 | CAMPAIGN.HAS req/s | vs 1 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for primaries, add_rps, has_rps in rows:
        lines.append("| %d | %.0f | %.2fx | %.0f | %.2fx |" % (
            primaries, add_rps, add_rps / base_add, has_rps, has_rps / base_has))
    lines += [
        "",
        "| write-behind into one PostgreSQL, %d rows | rows/s (median of %d) |" % (
            options.members, rounds),
        "|---|---:|",
        "| 1 primary | %.0f |" % one,
        "| 3 primaries at once | %.0f |" % three,
        "| **3 / 1** | **%.2fx** |" % (three / one),
    ]
    table = "\n".join(lines)
    print(table)
    with open(options.out, "w") as out:
        out.write("# Redis Cluster scale-out benchmark\n\n`bench/run.sh cluster`\n\n")
        out.write("redis-benchmark --cluster -n %d -r 100000000 -c 50 -P 16, one thread per "
                  "primary, `CAMPAIGN.ADD c:{tag} __rand_int__` then `CAMPAIGN.HAS c:{tag} "
                  "__rand_int__` (one campaign per primary); median of %d clusters.\n\n"
                  % (REQUESTS, rounds))
        out.write(table + "\n\n" + machine() + "\n")


def machine():
    import platform
    version = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    return "Machine: %s, %d cores, redis-server %s; every server and the load generator " \
           "share these cores." % (platform.platform(), os.cpu_count(), version)


if __name__ == "__main__":
    main()
