"""Membership benchmark: the module's compact member sets against a native
Redis SET on the same redis-server, side by side in one run, and an indexed
PostgreSQL lookup of the same members as a peer.

    bench/run.sh            (builds the module, installs matplotlib if missing)
    python3 bench/membership.py [--quick] [--out-dir docs/bench]

Starts its own redis-server (with target/release/libredis_campaign.so) and
its own PostgreSQL; prints the tables and writes docs/bench/membership.md,
docs/bench/membership.png and docs/bench/membership.json.

Measured:
1. memory: used_memory released by DEL of a campaign / a native SET holding
   1M members of each kind (the module's pending journal is not the set, so
   it is left out this way), and the time of loading them in 100 calls of
   10k (CAMPAIGN.ADD vs SADD), median of 3 rounds alternating the two;
2. CAMPAIGN.HAS vs SISMEMBER with redis-benchmark -P 16 -c 50 on random
   members (__rand_int__), alternating, median of 3 pairs: requests/s and
   in-server usec_per_call (INFO commandstats);
3. CAMPAIGN.MHAS vs SMISMEMBER of 100 members;
4. CAMPAIGN.HAS vs `SELECT 1 FROM campaign_members WHERE campaign = $1 AND
   member = $2` (primary-key index, pgbench -M prepared), both with 50
   unpipelined clients: requests/s, p50 and p99 latency.
"""

import argparse
import csv
import io
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import (  # noqa: E402
    MODULE,
    REPO,
    Postgres,
    Redis,
    RedisServer,
    pg_bin,
    settled_used_memory,
)

BATCH = 10_000
ROUNDS = 3
HAS_PAIRS = 5  # the lookup goals sit close to the noise of a shared 2-core machine
KEY_SPACE = 2_000_000  # -r of redis-benchmark: members are drawn from this many


# ---------------------------------------------------------------- members

def numeric_below(rng, count, bound):
    return [str(value) for value in rng.sample(range(bound), count)]


def uuid_v4(rng, count):
    out = []
    for _ in range(count):
        value = rng.getrandbits(128)
        value = (value & ~(0xF << 76)) | (0x4 << 76)  # version 4
        value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
        text = "%032x" % value
        out.append("%s-%s-%s-%s-%s" % (text[:8], text[8:12], text[12:16], text[16:20], text[20:]))
    return out


ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:@"


def arbitrary_strings(rng, count):
    """8 to 32 characters (20 on average), one in 20 with a non-ASCII letter."""
    out = set()
    while len(out) < count:
        text = "".join(rng.choices(ALPHABET, k=rng.randint(8, 32)))
        if rng.random() < 0.05:
            text = text[:-1] + rng.choice("éüøß")
        out.add(text)
    # A fixed order (a set's order changes with Python's string hash seed,
    # and the arena's last growth step with the order).
    members = sorted(out)
    rng.shuffle(members)
    return members


# (name, generator, goal in bytes per member or "native", note)
MEMORY_KINDS = [
    ("numeric ids, random below 10^8", lambda rng, n: numeric_below(rng, n, 10**8), 8,
     "the goal's case: distinct random ids below 10^8"),
    ("user:<id>, id random below 10^8",
     lambda rng, n: ["user:" + m for m in numeric_below(rng, n, 10**8)], 4,
     "the README's member form: a fixed prefix and a random canonical id below 10^8"),
    ("UUIDs (v4, lowercase)", uuid_v4, 40, "random version-4 UUIDs"),
    ("arbitrary strings", arbitrary_strings, "native",
     "8-32 chars of [A-Za-z0-9._-:@], 5% with a non-ASCII letter"),
    ("numeric ids, sequential 1..N", lambda rng, n: [str(i) for i in range(1, n + 1)], None,
     "best case: auto-increment ids"),
    ("numeric ids, random below 2^32", lambda rng, n: numeric_below(rng, n, 2**32), None,
     "scattered 32-bit ids"),
    ("numeric ids, random u64", lambda rng, n: [str(rng.getrandbits(64)) for _ in range(n)],
     None, "worst case for bitmaps: fully random 64-bit ids"),
]

# HAS datasets: redis-benchmark replaces __rand_int__ with a 12-digit,
# zero-padded number below KEY_SPACE, so each dataset is 1M of the
# KEY_SPACE possible members (50% of lookups hit) in a form that keeps the
# member kind: "1" + 12 digits is a canonical id, the last UUID group is 12
# hex digits, "user:1" + 12 digits a prefixed canonical id, and
# "user:" + 12 zero-padded digits is not canonical, so it stays a string.
# (name, key, redis-benchmark template, member of a number below KEY_SPACE,
#  throughput goal as a multiple of SISMEMBER's)
HAS_DATASETS = [
    ("numeric ids", "has:numeric", "1__rand_int__", lambda k: "1%012d" % k, 1.0),
    ("user:<id>", "has:user", "user:1__rand_int__", lambda k: "user:1%012d" % k, 1.2),
    ("UUIDs", "has:uuid", "00000000-0000-4000-8000-__rand_int__",
     lambda k: "00000000-0000-4000-8000-%012d" % k, 1.0),
    ("strings", "has:strings", "user:__rand_int__", lambda k: "user:%012d" % k, 1.0),
]


# ---------------------------------------------------------------- helpers

def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def command_usec(redis, command):
    stats = redis.info("commandstats").get("cmdstat_" + command.lower())
    if not stats:
        return None
    fields = dict(part.split("=") for part in stats.split(","))
    return int(fields["calls"]), int(fields["usec"]), float(fields["usec_per_call"])


def payloads(command, key, members):
    return [Redis.encode(command, key, *members[start:start + BATCH])
            for start in range(0, len(members), BATCH)]


def send_all(redis, encoded):
    """Sends each call and waits for its reply (no pipelining across calls)."""
    started = time.perf_counter()
    for payload in encoded:
        redis.sock.sendall(payload)
        reply = redis.read()
        assert isinstance(reply, int), reply
    return time.perf_counter() - started


def redis_benchmark(port, args, requests, clients=50, pipeline=16):
    command = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-P", str(pipeline),
               "-n", str(requests), "-r", str(KEY_SPACE), "--csv"] + args
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    header, row = rows[0], rows[-1]
    values = dict(zip(header, row))
    return {"rps": float(values["rps"]), "p50_ms": float(values["p50_latency_ms"]),
            "p99_ms": float(values["p99_latency_ms"])}


def run_timed(redis, port, args, requests, clients=50, pipeline=16):
    redis.call("CONFIG", "RESETSTAT")
    result = redis_benchmark(port, args, requests, clients, pipeline)
    calls, usec, per_call = command_usec(redis, args[0])
    result["usec_per_call"] = per_call
    # The machine may be shared: keep how busy it was next to each run.
    result["loadavg_1m"] = float(open("/proc/loadavg").read().split()[0])
    return result


def count(members):
    return "%gM" % (members / 1e6) if members >= 1_000_000 else "%dk" % (members // 1000)


def ratio(a, b):
    return a / b if b else float("nan")


def yes(flag):
    return "**yes**" if flag else "**NO**"


# ---------------------------------------------------------------- phases

# Without a database the module's flusher thread busy-waits as soon as an
# entry is pending for flush-interval-ms or a full batch is pending (found
# while writing this benchmark; reported). These settings keep it asleep
# until 1M entries are pending, i.e. through every timed load below.
QUIET_FLUSHER = ("flush-interval-ms", 3_600_000, "flush-batch-size", 1_000_000)


def memory_and_bulk_add(members_per_kind, rounds):
    """Per kind and round, on a fresh server: SADD the members (timed), DEL,
    then CAMPAIGN.ADD them (timed), DEL; memory = used_memory given back by
    each DEL."""
    results = []
    rng = random.Random(20240501)
    for name, generate, goal, note in MEMORY_KINDS:
        members = generate(rng, members_per_kind)
        distinct = len(set(members))
        encoded = {"module": payloads("CAMPAIGN.ADD", "campaign", members),
                   "native": payloads("SADD", "native", members)}
        times = {"module": [], "native": []}
        server_s = {"module": [], "native": []}
        released = {"module": [], "native": []}
        usage = []
        for _ in range(rounds):
            server = RedisServer(*QUIET_FLUSHER)
            try:
                redis = server.client()
                for side in ["native", "module"]:
                    key = "campaign" if side == "module" else "native"
                    command = "CAMPAIGN.ADD" if side == "module" else "SADD"
                    settled_used_memory(redis)
                    redis.call("CONFIG", "RESETSTAT")
                    times[side].append(send_all(redis, encoded[side]))
                    server_s[side].append(command_usec(redis, command)[1] / 1e6)
                    loaded = settled_used_memory(redis)
                    if side == "module":
                        usage.append(redis.call("MEMORY", "USAGE", key))
                    assert redis.call("DEL", key) == 1
                    released[side].append(loaded - settled_used_memory(redis))
            finally:
                server.stop()
        row = {
            "kind": name, "note": note, "members": distinct, "goal": goal,
            "module_bytes": statistics.median(released["module"]) / distinct,
            "native_bytes": statistics.median(released["native"]) / distinct,
            "module_memory_usage": statistics.median(usage) / distinct,
            "module_add_s": statistics.median(times["module"]),
            "native_add_s": statistics.median(times["native"]),
            "module_add_server_s": statistics.median(server_s["module"]),
            "native_add_server_s": statistics.median(server_s["native"]),
            "add_times": times, "released_bytes": released,
        }
        results.append(row)
        log("%-32s module %6.1f B/member, native %6.1f; ADD %.2f s vs SADD %.2f s" % (
            name, row["module_bytes"], row["native_bytes"], row["module_add_s"],
            row["native_add_s"]))
    return results


def load_has_datasets(redis, members_per_dataset, postgres):
    rng = random.Random(7)
    picks = rng.sample(range(KEY_SPACE), members_per_dataset)
    loaded = {}
    for name, key, template, member_of, _ in HAS_DATASETS:
        members = [member_of(k) for k in picks]
        send_all(redis, payloads("CAMPAIGN.ADD", key, members))
        send_all(redis, payloads("SADD", key + ":native", members))
        loaded[name] = (key, template, members)
    # The write-behind flusher puts every member into PostgreSQL (the peer
    # below reads them there); wait for it, so nothing runs beside the
    # benchmarks.
    started = time.perf_counter()
    redis.call("CAMPAIGN.FLUSH", "600000")
    assert int(redis.status()["pending"]) == 0
    log("flushed %d members to PostgreSQL in %.1f s" % (
        len(picks) * len(HAS_DATASETS), time.perf_counter() - started))
    # Leave autovacuum and the checkpointer nothing to do while Redis is
    # measured (on 2 cores they would take CPU from it at random moments).
    postgres.psql("VACUUM ANALYZE campaign_members")
    postgres.psql("CHECKPOINT")
    return loaded


def has_throughput(server, datasets, requests, pairs):
    redis = server.client()
    results = []
    for name, (key, template, _) in datasets.items():
        runs = {"module": [], "native": []}
        for pair in range(pairs):
            order = ["module", "native"] if pair % 2 == 0 else ["native", "module"]
            for side in order:
                args = (["CAMPAIGN.HAS", key, template] if side == "module"
                        else ["SISMEMBER", key + ":native", template])
                runs[side].append(run_timed(redis, server.port, args, requests))
        row = {"dataset": name, "runs": runs}
        for side in runs:
            row[side + "_rps"] = statistics.median(r["rps"] for r in runs[side])
            row[side + "_usec"] = statistics.median(r["usec_per_call"] for r in runs[side])
        # The ratios are those of the two medians shown beside them; the
        # median of the per-pair ratios is kept too, labelled as such.
        row["rps_ratio"] = ratio(row["module_rps"], row["native_rps"])
        row["usec_ratio"] = ratio(row["module_usec"], row["native_usec"])
        row["rps_pair_ratio_median"] = statistics.median(
            ratio(m["rps"], n["rps"]) for m, n in zip(runs["module"], runs["native"]))
        row["usec_pair_ratio_median"] = statistics.median(
            ratio(m["usec_per_call"], n["usec_per_call"])
            for m, n in zip(runs["module"], runs["native"]))
        results.append(row)
        log("HAS %-12s %8.0f/s vs SISMEMBER %8.0f/s (x%.2f); %.2f vs %.2f usec (x%.2f)" % (
            name, row["module_rps"], row["native_rps"], row["rps_ratio"], row["module_usec"],
            row["native_usec"], row["usec_ratio"]))
    return results


def mhas_throughput(server, datasets, requests, pairs, width=100):
    redis = server.client()
    key, template, _ = datasets["numeric ids"]
    runs = {"module": [], "native": []}
    for pair in range(pairs):
        order = ["module", "native"] if pair % 2 == 0 else ["native", "module"]
        for side in order:
            args = (["CAMPAIGN.MHAS", key] if side == "module"
                    else ["SMISMEMBER", key + ":native"]) + [template] * width
            runs[side].append(run_timed(redis, server.port, args, requests, pipeline=4))
    row = {"width": width, "runs": runs}
    for side in runs:
        row[side + "_rps"] = statistics.median(r["rps"] for r in runs[side])
        row[side + "_usec"] = statistics.median(r["usec_per_call"] for r in runs[side])
    row["rps_ratio"] = ratio(row["module_rps"], row["native_rps"])
    row["usec_ratio"] = ratio(row["module_usec"], row["native_usec"])
    log("MHAS %d: %.0f calls/s vs SMISMEMBER %.0f (x%.2f); %.1f vs %.1f usec" % (
        width, row["module_rps"], row["native_rps"], row["rps_ratio"], row["module_usec"],
        row["native_usec"]))
    return row


PGBENCH_SCRIPT = """\\set k random(0, %d)
\\set m 1000000000000 + :k
SELECT 1 FROM campaign_members WHERE campaign = :campaign AND member = :m;
""" % (KEY_SPACE - 1)


def postgres_peer(server, postgres, datasets, seconds, requests, pairs):
    key, template, members = datasets["numeric ids"]
    stored = int(postgres.psql("SELECT count(*) FROM campaign_members WHERE campaign = '%s'"
                               % key))
    assert stored == len(members), (stored, len(members))
    plan = postgres.psql("EXPLAIN SELECT 1 FROM campaign_members WHERE campaign = '%s' "
                         "AND member = '1000000000042'" % key)
    work = tempfile.mkdtemp(prefix="bench-pgbench-")
    script = os.path.join(work, "lookup.sql")
    with open(script, "w") as out:
        out.write(PGBENCH_SCRIPT)
    base = [os.path.join(pg_bin(), "pgbench"), "-h", "127.0.0.1", "-p", str(postgres.port),
            "-U", "postgres", "-n", "-M", "prepared", "-c", "50", "-j", "2",
            "-D", "campaign=" + key, "-f", script]
    # Warm-up, then the measured run with a per-transaction log.
    subprocess.run(base + ["-T", "2", "postgres"], check=True, capture_output=True, cwd=work)
    out = subprocess.run(base + ["-T", str(seconds), "-l", "postgres"], check=True,
                         capture_output=True, text=True, cwd=work).stdout
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial", out).group(1))
    latencies = []
    for name in os.listdir(work):
        if name.startswith("pgbench_log"):
            with open(os.path.join(work, name)) as log_file:
                latencies.extend(int(line.split()[2]) for line in log_file)
    shutil.rmtree(work, ignore_errors=True)
    latencies.sort()
    pg = {"rps": tps, "p50_ms": latencies[len(latencies) // 2] / 1000,
          "p99_ms": latencies[int(len(latencies) * 0.99)] / 1000,
          "transactions": len(latencies), "plan": plan,
          "rows": int(postgres.psql("SELECT count(*) FROM campaign_members"))}
    redis = server.client()
    runs = {"module": [], "native": []}
    for pair in range(pairs):
        order = ["module", "native"] if pair % 2 == 0 else ["native", "module"]
        for side in order:
            args = (["CAMPAIGN.HAS", key, template] if side == "module"
                    else ["SISMEMBER", key + ":native", template])
            runs[side].append(run_timed(redis, server.port, args, requests, pipeline=1))
    module, native = ({field: statistics.median(run[field] for run in runs[side])
                       for field in runs[side][0]} for side in ("module", "native"))
    module["runs"], native["runs"] = runs["module"], runs["native"]
    log("peer: HAS %.0f/s p99 %.2f ms; SISMEMBER %.0f/s p99 %.2f ms; PostgreSQL %.0f/s "
        "p99 %.2f ms" % (module["rps"], module["p99_ms"], native["rps"], native["p99_ms"],
                         pg["rps"], pg["p99_ms"]))
    return {"module": module, "native": native, "postgres": pg}


# ---------------------------------------------------------------- report

def output(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True,
                              cwd=REPO).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        ram_kb = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    commit = output(["git", "rev-parse", "--short", "HEAD"])
    if output(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (with uncommitted changes)"
    try:
        import matplotlib
        mpl = matplotlib.__version__
    except ImportError:
        mpl = "not installed"
    return {
        "cpus (nproc)": output(["nproc"]),
        "cpu model": cpu,
        "ram": "%.1f GiB" % (ram_kb / 2**20),
        "os": platform.platform(),
        "redis-server": output(["redis-server", "--version"]),
        "postgresql": output([os.path.join(pg_bin(), "postgres"), "--version"]),
        "pgbench": output([os.path.join(pg_bin(), "pgbench"), "--version"]),
        "rustc": output(["rustc", "--version"]),
        "module commit": commit,
        "module .so": "%s (%s)" % (os.path.relpath(MODULE, REPO), time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(MODULE)))),
        "python / matplotlib": "%s / %s" % (platform.python_version(), mpl),
        "load average at start": " ".join(open("/proc/loadavg").read().split()[:3]),
    }


def markdown(report):
    lines = []
    memory, has, mhas, peer = report["memory"], report["has"], report["mhas"], report["peer"]
    by_kind = {row["kind"]: row for row in memory}
    has_num = next(row for row in has if row["dataset"] == "numeric ids")

    goals = []
    throughput_goal = {name: goal for name, _, _, _, goal in HAS_DATASETS}
    for row in [has_num] + [row for row in has if row is not has_num]:
        wanted = throughput_goal[row["dataset"]]
        goals.append(("HAS throughput >= %.1fx SISMEMBER, %s (-P 16 -c 50, medians of %d "
                      "runs each)" % (wanted, row["dataset"], report["has_pairs"]),
                      "%.2fx (%.0f vs %.0f req/s)" % (row["rps_ratio"], row["module_rps"],
                                                      row["native_rps"]),
                      row["rps_ratio"] >= wanted))
        goals.append(("HAS in-server usec_per_call <= 0.8x SISMEMBER, %s" % row["dataset"],
                      "%.2fx (%.2f vs %.2f usec)" % (row["usec_ratio"], row["module_usec"],
                                                     row["native_usec"]),
                      row["usec_ratio"] <= 0.8))
    for row in memory:
        if row["goal"] is None:
            continue
        limit = row["native_bytes"] if row["goal"] == "native" else row["goal"]
        goals.append(("bytes per member, %s %s <= %s" % (
            count(row["members"]), row["kind"], "native" if row["goal"] == "native" else row["goal"]),
            "%.1f (native %.1f)" % (row["module_bytes"], row["native_bytes"]),
            row["module_bytes"] <= limit))
    for row in memory:
        if row["goal"] is None:
            continue
        add_ratio = ratio(row["module_add_s"], row["native_add_s"])
        goals.append(("bulk ADD of %s %s in calls of 10k <= 1.0x SADD" % (
            count(row["members"]), row["kind"]),
                      "%.2fx (%.2f s vs %.2f s)" % (add_ratio, row["module_add_s"],
                                                   row["native_add_s"]), add_ratio <= 1.0))
    goals.append(("MHAS of 100 vs SMISMEMBER (no target)",
                  "%.2fx calls/s, %.2fx usec_per_call" % (mhas["rps_ratio"], mhas["usec_ratio"]),
                  None))

    lines += ["## Goals", "", "| goal | measured | met |", "|---|---:|:---:|"]
    for goal, measured, met in goals:
        lines.append("| %s | %s | %s |" % (goal, measured, "n/a" if met is None else yes(met)))

    lines += ["", "## Memory and bulk load (%s members per kind)" % count(report["members"]), "",
              "Bytes per member = `used_memory` given back by `DEL` of the key, divided by "
              "the members. Load time = 100 calls of 10k members (`CAMPAIGN.ADD` vs `SADD`, "
              "one call at a time), wall clock seen by the client; in-server = `INFO "
              "commandstats` usec. Each of %d rounds starts a fresh redis-server that loads "
              "and deletes the native SET, then the campaign; medians." % report["rounds"],
              "",
              "| members | module B/member | native B/member | module / native | "
              "module ADD s | native SADD s | ADD / SADD | in-server ADD s | "
              "in-server SADD s | in-server ADD / SADD | goal |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in memory:
        goal = {None: "(reported)", "native": "<= native"}.get(row["goal"], row["goal"])
        if isinstance(goal, int):
            goal = "<= %d B" % goal
        lines.append("| %s (%d) | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f "
                     "| %s |" % (
                         row["kind"], row["members"], row["module_bytes"], row["native_bytes"],
                         ratio(row["module_bytes"], row["native_bytes"]), row["module_add_s"],
                         row["native_add_s"], ratio(row["module_add_s"], row["native_add_s"]),
                         row["module_add_server_s"], row["native_add_server_s"],
                         ratio(row["module_add_server_s"], row["native_add_server_s"]), goal))
    lines += ["", "Datasets: " + "; ".join("%s: %s" % (row["kind"], row["note"])
                                           for row in memory) + "."]
    lines += ["", "`MEMORY USAGE` (the module's own estimate) per member: " + ", ".join(
        "%s %.1f" % (row["kind"], row["module_memory_usage"]) for row in memory) + ". "
        "Not counted above: each `CAMPAIGN.ADD` also leaves one pending write-behind "
        "journal entry per new member until PostgreSQL has it (no database is configured "
        "here; see docs/bench/write-behind.md for its size). This phase runs the module "
        "with `flush-interval-ms 3600000 flush-batch-size 1000000`: without a database the "
        "flusher thread otherwise busy-waits on a core once anything is pending (a bug "
        "found by this benchmark), which would slow everything on a 2-core machine."]

    lines += ["", "## CAMPAIGN.HAS vs SISMEMBER (redis-benchmark -P 16 -c 50)", "",
              "%s members of %d possible per dataset, looked up at random (`__rand_int__`, "
              "`-r %d`: %d%% of the lookups hit). %d pairs, alternating which runs first; "
              "medians, and each ratio is the ratio of the two medians beside it (the median "
              "of the per-pair ratios is in the last two columns, for comparison only). "
              "The module runs with "
              "a database configured and nothing pending (loaded, then `CAMPAIGN.FLUSH`). "
              "redis-benchmark can only vary decimal digits, so the UUIDs differ in their "
              "last group only; the module keeps UUIDs under a keyed mix, which spreads "
              "them like random ones." % (
                  count(report["has_members"]), KEY_SPACE, KEY_SPACE,
                  100 * report["has_members"] // KEY_SPACE, report["has_pairs"]), "",
              "| dataset (member form) | HAS req/s | SISMEMBER req/s | ratio | "
              "HAS usec/call | SISMEMBER usec/call | ratio | per-pair median, req/s | "
              "per-pair median, usec |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in has:
        template = next(t for n, _, t, _, _ in HAS_DATASETS if n == row["dataset"])
        lines.append("| %s (`%s`) | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            row["dataset"], template, row["module_rps"], row["native_rps"], row["rps_ratio"],
            row["module_usec"], row["native_usec"], row["usec_ratio"],
            row["rps_pair_ratio_median"], row["usec_pair_ratio_median"]))
    lines += ["", "Each run: " + "; ".join(
        "%s HAS %s / SISMEMBER %s req/s" % (
            row["dataset"], ", ".join("%.0f" % r["rps"] for r in row["runs"]["module"]),
            ", ".join("%.0f" % r["rps"] for r in row["runs"]["native"])) for row in has) + "."]

    lines += ["", "## CAMPAIGN.MHAS vs SMISMEMBER, %d members per call" % mhas["width"], "",
              "redis-benchmark -P 4 -c 50, numeric ids dataset, median of %d pairs." % (
                  report["pairs"]), "",
              "| | calls/s | lookups/s | usec/call |", "|---|---:|---:|---:|",
              "| CAMPAIGN.MHAS | %.0f | %.0f | %.1f |" % (
                  mhas["module_rps"], mhas["module_rps"] * mhas["width"], mhas["module_usec"]),
              "| SMISMEMBER | %.0f | %.0f | %.1f |" % (
                  mhas["native_rps"], mhas["native_rps"] * mhas["width"], mhas["native_usec"]),
              "| **MHAS / SMISMEMBER** | **%.2f** | | **%.2f** |" % (
                  mhas["rps_ratio"], mhas["usec_ratio"])]

    pg = peer["postgres"]
    lines += ["", "## The database as a peer: one lookup, 50 unpipelined clients", "",
              "The numeric-ids campaign as the module's write-behind flusher stored it in "
              "`campaign_members` (SPEC schema, primary key (campaign, member); %d rows of "
              "the three datasets, `VACUUM ANALYZE`d), random members of the same %d: "
              "`pgbench -M prepared -c 50 -j 2 -T %d` with `SELECT 1 FROM campaign_members "
              "WHERE campaign = :campaign AND member = :m` vs `redis-benchmark -c 50 -P 1` (medians of "
              "%d pairs; one pgbench run)." % (
                  pg["rows"], KEY_SPACE, report["pg_seconds"], report["pairs"]), "",
              "| lookup | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|",
              "| CAMPAIGN.HAS | %.0f | %.3f | %.3f |" % (
                  peer["module"]["rps"], peer["module"]["p50_ms"], peer["module"]["p99_ms"]),
              "| SISMEMBER | %.0f | %.3f | %.3f |" % (
                  peer["native"]["rps"], peer["native"]["p50_ms"], peer["native"]["p99_ms"]),
              "| PostgreSQL indexed SELECT | %.0f | %.3f | %.3f |" % (
                  pg["rps"], pg["p50_ms"], pg["p99_ms"]),
              "| **HAS / PostgreSQL** | **%.1fx** | | **%.2fx** |" % (
                  ratio(peer["module"]["rps"], pg["rps"]),
                  ratio(peer["module"]["p99_ms"], pg["p99_ms"])),
              "", "PostgreSQL plan: `%s`." % pg["plan"].splitlines()[0].strip()]
    return lines


def chart(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory, has, peer = report["memory"], report["has"], report["peer"]
    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    width = 0.38

    ax = axes[0][0]
    labels = [row["kind"].replace("numeric ids, ", "ids ") for row in memory]
    xs = range(len(memory))
    ax.bar([x - width / 2 for x in xs], [r["module_bytes"] for r in memory], width,
           label="campaign (module)")
    ax.bar([x + width / 2 for x in xs], [r["native_bytes"] for r in memory], width,
           label="native SET")
    for x, row in zip(xs, memory):
        ax.text(x - width / 2, row["module_bytes"], "%.1f" % row["module_bytes"],
                ha="center", va="bottom", fontsize=8)
        ax.text(x + width / 2, row["native_bytes"], "%.0f" % row["native_bytes"],
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("bytes per member (used_memory)")
    ax.set_title("Memory, %s members" % count(report["members"]))
    ax.legend()

    ax = axes[0][1]
    xs = range(len(memory))
    ax.bar([x - width / 2 for x in xs], [r["module_add_s"] for r in memory], width,
           label="CAMPAIGN.ADD")
    ax.bar([x + width / 2 for x in xs], [r["native_add_s"] for r in memory], width,
           label="SADD")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("Bulk load: %s members in calls of 10k" % count(report["members"]))
    ax.legend()

    ax = axes[1][0]
    xs = range(len(has))
    ax.bar([x - width / 2 for x in xs], [r["module_rps"] / 1000 for r in has], width,
           label="CAMPAIGN.HAS")
    ax.bar([x + width / 2 for x in xs], [r["native_rps"] / 1000 for r in has], width,
           label="SISMEMBER")
    for x, row in zip(xs, has):
        ax.text(x - width / 2, row["module_rps"] / 1000, "%.2f us" % row["module_usec"],
                ha="center", va="bottom", fontsize=8)
        ax.text(x + width / 2, row["native_rps"] / 1000, "%.2f us" % row["native_usec"],
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["dataset"] for r in has])
    ax.set_ylabel("thousand requests/s (labels: in-server usec/call)")
    ax.set_title("Lookups, redis-benchmark -P 16 -c 50")
    ax.legend(loc="lower right")

    ax = axes[1][1]
    names = ["CAMPAIGN.HAS", "SISMEMBER", "PostgreSQL"]
    values = [peer["module"], peer["native"], peer["postgres"]]
    ax.bar(names, [v["rps"] / 1000 for v in values], color=["C0", "C1", "C2"])
    for x, value in enumerate(values):
        ax.text(x, value["rps"] / 1000, "p99 %.2f ms" % value["p99_ms"], ha="center",
                va="bottom", fontsize=9)
    ax.set_ylabel("thousand requests/s (labels: p99 latency)")
    ax.set_title("One lookup, 50 unpipelined clients")

    figure.suptitle("redis-campaign membership benchmark (%s, %s cores)" % (
        report["machine"]["cpu model"], report["machine"]["cpus (nproc)"]))
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="100k members and short runs, to try the script out")
    parser.add_argument("--out-dir", default=os.path.join(REPO, "docs", "bench"))
    options = parser.parse_args()
    members = 100_000 if options.quick else 1_000_000
    requests = 200_000 if options.quick else 1_000_000
    rounds = 1 if options.quick else ROUNDS
    pairs = 1 if options.quick else ROUNDS
    has_pairs = 1 if options.quick else HAS_PAIRS
    pg_seconds = 3 if options.quick else 10
    if not os.path.exists(MODULE):
        sys.exit("build the module first: cargo build --release (or use bench/run.sh)")

    started = time.time()
    report = {"machine": machine(), "rounds": rounds, "pairs": pairs,
              "has_pairs": has_pairs,
              "pg_seconds": pg_seconds, "members": members}
    log("machine: %s" % report["machine"])
    report["memory"] = memory_and_bulk_add(members, rounds)

    postgres = Postgres()
    server = None
    try:
        server = RedisServer("database-url", postgres.url)
        report["has_members"] = min(members, KEY_SPACE // 2)
        datasets = load_has_datasets(server.client(), report["has_members"], postgres)
        report["has"] = has_throughput(server, datasets, requests, has_pairs)
        report["mhas"] = mhas_throughput(server, datasets, requests // 20, pairs)
        report["peer"] = postgres_peer(server, postgres, datasets, pg_seconds,
                                       requests // 5, pairs)
    finally:
        if server:
            server.stop()
        postgres.stop()
    report["seconds"] = time.time() - started
    report["machine"]["load average at end"] = " ".join(open("/proc/loadavg").read().split()[:3])

    command = "bench/run.sh" + (" --quick" if options.quick else "")
    lines = ["# Membership benchmark", "",
             "`%s` (runs `python3 bench/membership.py`); %.0f s; %s." % (
                 command, report["seconds"], time.strftime("%Y-%m-%d %H:%M %Z")), ""]
    lines += ["| machine and versions | |", "|---|---|"]
    lines += ["| %s | %s |" % item for item in report["machine"].items()]
    lines += [""] + markdown(report) + ["", "![chart](membership.png)", ""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(options.out_dir, exist_ok=True)
    with open(os.path.join(options.out_dir, "membership.md"), "w") as out:
        out.write(text)
    with open(os.path.join(options.out_dir, "membership.json"), "w") as out:
        json.dump(report, out, indent=1, default=str)
    try:
        chart(report, os.path.join(options.out_dir, "membership.png"))
    except ImportError:
        log("matplotlib is not installed: no chart (bench/run.sh installs it)")


if __name__ == "__main__":
    main()
