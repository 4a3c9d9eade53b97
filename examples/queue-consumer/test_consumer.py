#!/usr/bin/env python3
"""Crash test of consumer.py against a real redis-server (with the module)
and PostgreSQL; examples/queue-consumer/run.sh starts both and runs this.

1. 300 enrollment events go into the stream (some repeat a member, two are
   invalid).
2. worker-1 SIGKILLs itself after ADD and FLUSH of its 50th event, before
   XACK. That event's member is already in Redis and PostgreSQL; it and the
   rest of the batch worker-1 had read stay in worker-1's pending list.
3. worker-1 restarts, reads its own pending list (XREADGROUP ... 0), applies
   event 50 again (ADD replies 0: nothing changes, nothing is journaled) and
   SIGKILLs itself after the ADD of its 30th event, before FLUSH.
4. 50 more events arrive. worker-2 starts, claims what worker-1 left pending
   (XAUTOCLAIM), reads the rest and exits when idle.

Then, against the stream, the ack log and PostgreSQL's rows: every event is
acked exactly once, none is pending, every valid member is a row in
PostgreSQL (and no other row is), the module journaled each member exactly
once (STATUS flushed), and the two invalid events are in the dead-letter
stream.

Environment: REDIS_URL, PSQL (psql binary), PG_PORT, WORK_DIR (for logs).
"""

import collections
import json
import os
import subprocess
import sys
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_URL = os.environ["REDIS_URL"]
WORK_DIR = os.environ["WORK_DIR"]
STREAM, GROUP = "enrollments", "campaign-enroller"
CAMPAIGNS = ["spring-sale", "summer", "vip"]
ACK_LOG = os.path.join(WORK_DIR, "consumer-log.jsonl")

r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
checks = 0


def check(what, ok, detail=""):
    global checks
    if not ok:
        print(f"  FAIL  {what} {detail}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"  ok  {what}", flush=True)


def psql(sql):
    out = subprocess.run(
        [os.environ["PSQL"], "-X", "-q", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1",
         "-h", "127.0.0.1", "-p", os.environ["PG_PORT"], "-U", "postgres", "-d", "campaign",
         "-c", sql],
        check=True, capture_output=True, text=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


def consumer(name, *extra):
    """Runs consumer.py to its end (exit when idle, or its crash)."""
    cmd = [sys.executable, os.path.join(HERE, "consumer.py"), "--redis-url", REDIS_URL,
           "--consumer", name, "--exit-when-idle", "--block-ms", "300", "--log", ACK_LOG, *extra]
    out = os.path.join(WORK_DIR, f"{name}.out")
    with open(out, "a", encoding="utf-8") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=120)
    return proc.returncode


def produce(events):
    ids = []
    for fields in events:
        ids.append(r.xadd(STREAM, fields))
    return ids


def pending():
    """Pending entries: {event id: (consumer, times delivered)}."""
    rows = r.xpending_range(STREAM, GROUP, min="-", max="+", count=10000)
    return {p["message_id"]: (p["consumer"], p["times_delivered"]) for p in rows}


def as_dict(reply):
    """A field/value reply as a dict (RESP3 gives a map, RESP2 a flat list)."""
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))


def members_in_db():
    return set(psql("SELECT campaign, member FROM campaign_members"))


def main():
    if os.path.exists(ACK_LOG):
        os.remove(ACK_LOG)

    # 1. The first 250 events: 240 distinct members, 8 repeats, 2 invalid.
    events = [{"campaign": CAMPAIGNS[i % 3], "user": f"user:{i}"} for i in range(240)]
    events += [dict(events[i]) for i in (3, 7, 11, 60, 61, 62, 150, 200)]
    events.insert(120, {"campaign": "summer", "user": "x" * 300})  # longer than max-member-bytes
    events.insert(121, {"campaign": "summer"})  # no user
    ids = produce(events)

    # 2. worker-1 dies after ADD+FLUSH of its 50th event, before XACK.
    rc = consumer("worker-1", "--crash-after", "flush", "--crash-on", "50")
    check("worker-1 was killed (SIGKILL) after FLUSH, before XACK", rc == -9, f"exit {rc}")
    crashed = ids[49]
    pel = pending()
    check("event 50 is still pending for worker-1", pel.get(crashed) == ("worker-1", 1), pel.get(crashed))
    check("worker-1 left its unfinished batch pending (events 50-100)",
          sorted(pel) == sorted(ids[49:100]), f"{len(pel)} pending")
    ev = events[49]
    check("event 50's member is in PostgreSQL (FLUSH returned) though not acked",
          (ev["campaign"], ev["user"]) in members_in_db())
    check("event 51 was not applied", r.execute_command("CAMPAIGN.HAS", events[50]["campaign"], events[50]["user"]) == 0)

    # 3. worker-1 restarts: its own pending entries first; dies after ADD of
    # the 30th (event 79), before FLUSH.
    rc = consumer("worker-1", "--crash-after", "add", "--crash-on", "30")
    check("restarted worker-1 was killed after ADD, before FLUSH", rc == -9, f"exit {rc}")
    pel = pending()
    check("events 79-100 are pending for worker-1",
          sorted(pel) == sorted(ids[78:100]) and all(c == "worker-1" for c, _ in pel.values()),
          f"{len(pel)} pending")
    check("event 79 was delivered twice", pel[ids[78]][1] == 2, pel[ids[78]])

    # 4. More events arrive; worker-2 takes over worker-1's pending entries.
    more = [{"campaign": CAMPAIGNS[i % 3], "user": f"user:{i}"} for i in range(240, 290)]
    ids += produce(more)
    events += more
    time.sleep(0.3)
    rc = consumer("worker-2", "--claim-idle-ms", "200")
    check("worker-2 ran to the end", rc == 0, f"exit {rc}")

    # --- Every event acked exactly once, nothing pending. ---
    log = [json.loads(line) for line in open(ACK_LOG, encoding="utf-8")]
    acks = collections.Counter(e["event"] for e in log if e["action"] == "ack" and e["acked"] == 1)
    stream_ids = [e[0] for e in r.xrange(STREAM)]
    check(f"the stream holds all {len(ids)} events", stream_ids == ids)
    check("every event was acked", set(acks) == set(ids), f"{len(set(ids) - set(acks))} never acked")
    check("no event was acked twice", max(acks.values()) == 1)
    check("no XACK found its event already acked",
          all(e["acked"] == 1 for e in log if e["action"] == "ack"))
    check("nothing is pending", r.xpending(STREAM, GROUP)["pending"] == 0)
    group = next(g for g in r.xinfo_groups(STREAM) if g["name"] == GROUP)
    check("the group has read the whole stream (lag 0)",
          group["last-delivered-id"] == ids[-1] and group.get("lag", 0) == 0, group)
    by_consumer = collections.Counter(e["consumer"] for e in log if e["action"] == "ack")
    check("worker-2 finished worker-1's claimed events and the new ones",
          by_consumer["worker-2"] == len(ids) - by_consumer["worker-1"] > 50, dict(by_consumer))

    ackers = {e["event"]: e["consumer"] for e in log if e["action"] == "ack"}
    check("worker-2 acked the events it claimed from worker-1 (XAUTOCLAIM)",
          all(ackers[i] == "worker-2" for i in ids[78:100]))

    # --- Re-delivered events changed nothing the second time. ---
    adds = collections.defaultdict(list)
    for e in log:
        if e["action"] == "add":
            adds[e["event"]].append(e["added"])
    check("event 50 was applied twice: ADD replied 1, then 0", adds[crashed] == [1, 0], adds[crashed])
    check("event 79 was applied twice: ADD replied 1, then 0", adds[ids[78]] == [1, 0], adds[ids[78]])

    # --- Both stores hold every valid member, and nothing else. ---
    valid = {(e["campaign"], e["user"]) for e in events
             if e.get("user") and len(e["user"]) <= 256}
    check("PostgreSQL holds every member, one row each, and no other row", members_in_db() == valid,
          f"{len(members_in_db())} rows, {len(valid)} expected")
    status = as_dict(r.execute_command("CAMPAIGN.STATUS"))
    check("the module journaled each member exactly once (STATUS flushed)",
          int(status["flushed"]) == len(valid) and int(status["pending"]) == 0,
          f"flushed {status['flushed']}, pending {status['pending']}, {len(valid)} members")
    for campaign in CAMPAIGNS:
        want = sum(1 for c, _ in valid if c == campaign)
        check(f"CAMPAIGN.CARD {campaign} is {want}",
              r.execute_command("CAMPAIGN.CARD", campaign) == want)
        verify = as_dict(r.execute_command("CAMPAIGN.VERIFY", campaign))
        check(f"CAMPAIGN.VERIFY {campaign}: consistent", int(verify["consistent"]) == 1, verify)

    dead = r.xrange(STREAM + ":dead")
    check("the two invalid events went to the dead-letter stream",
          sorted(d[1]["event"] for d in dead) == sorted([ids[120], ids[121]]), dead)
    print(f"queue-consumer: {checks} passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
