#!/usr/bin/env python3
"""The queue consumer of the campaign story.

Reads enrollment events from a Redis stream through a consumer group,

    XADD enrollments * campaign spring-sale user user:42

and for each one calls CAMPAIGN.ADD and then CAMPAIGN.FLUSH, and XACKs the
event only after FLUSH returned, that is once both Redis and PostgreSQL hold
the member (write-through). A consumer that dies anywhere before its XACK
leaves the event in the group's pending entries list (PEL); on restart it
first reads its own PEL (XREADGROUP ... 0) and claims what other, dead,
consumers left pending for longer than --claim-idle-ms (XAUTOCLAIM), then
reads new events (XREADGROUP ... >). Applying an event twice is harmless:
CAMPAIGN.ADD of a member that is already there changes and journals nothing.

An event the module refuses (a member that is too long, not UTF-8, ...) or
that lacks a field would fail forever: it is copied to the dead-letter
stream <stream>:dead with the error, then acked. A FLUSH that times out (the
database is down) leaves the event pending; it is retried after --retry-ms.

Needs redis-py (examples/requirements.txt). For the crash tests,
--crash-after add|flush --crash-on N makes the process SIGKILL itself right
after ADD (before FLUSH), or after ADD and FLUSH (before XACK), of its Nth
event.
"""

import argparse
import json
import os
import signal
import socket
import sys
import time

import redis


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--stream", default="enrollments")
    p.add_argument("--group", default="campaign-enroller")
    p.add_argument("--consumer", default=socket.gethostname() + "-" + str(os.getpid()),
                   help="consumer name; a restarted process should use the same name")
    p.add_argument("--batch", type=int, default=100, help="events read per XREADGROUP")
    p.add_argument("--block-ms", type=int, default=1000, help="XREADGROUP BLOCK")
    p.add_argument("--flush-timeout-ms", type=int, default=10000, help="CAMPAIGN.FLUSH timeout")
    p.add_argument("--claim-idle-ms", type=int, default=60000,
                   help="claim other consumers' events pending this long (XAUTOCLAIM)")
    p.add_argument("--retry-ms", type=int, default=1000,
                   help="wait before retrying after a FLUSH timeout or BUSY")
    p.add_argument("--exit-when-idle", action="store_true",
                   help="exit once no event is pending or new (for tests and batch jobs)")
    p.add_argument("--log", help="append one JSON line per ADD and XACK to this file")
    p.add_argument("--crash-after", choices=["add", "flush"], help=argparse.SUPPRESS)
    p.add_argument("--crash-on", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Consumer:
    def __init__(self, args):
        self.args = args
        self.r = redis.Redis.from_url(args.redis_url, decode_responses=True)
        self.dead = args.stream + ":dead"
        self.handled = 0  # events handled by this process (for --crash-on)
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None

    def record(self, **fields):
        if self.log:
            fields["consumer"] = self.args.consumer
            self.log.write(json.dumps(fields) + "\n")
            self.log.flush()  # reaches the kernel: survives a SIGKILL

    def crash(self, point):
        if self.args.crash_after == point and self.handled == self.args.crash_on:
            print(f"consumer {self.args.consumer}: SIGKILL after {point}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def ensure_group(self):
        try:
            # id 0: a new group starts with the events already in the stream.
            self.r.xgroup_create(self.args.stream, self.args.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def handle(self, event_id, fields):
        """Applies one event; returns True once it is acked."""
        self.handled += 1
        campaign, user = fields.get("campaign"), fields.get("user")
        if not campaign or not user:
            return self.dead_letter(event_id, fields, "event needs fields campaign and user")
        try:
            added = self.r.execute_command("CAMPAIGN.ADD", campaign, user)
        except redis.ResponseError as e:
            if str(e).startswith("BUSY"):  # journal full: back-pressure
                return False
            return self.dead_letter(event_id, fields, str(e))
        self.record(event=event_id, action="add", campaign=campaign, user=user, added=added)
        self.crash("add")
        try:
            self.r.execute_command("CAMPAIGN.FLUSH", self.args.flush_timeout_ms)
        except redis.ResponseError as e:
            # TIMEOUT: PostgreSQL does not have it yet. Leave it pending.
            print(f"consumer {self.args.consumer}: {event_id} not acked: {e}", file=sys.stderr, flush=True)
            return False
        self.crash("flush")
        acked = self.r.xack(self.args.stream, self.args.group, event_id)
        self.record(event=event_id, action="ack", acked=acked)
        return True

    def dead_letter(self, event_id, fields, error):
        print(f"consumer {self.args.consumer}: {event_id} to {self.dead}: {error}", file=sys.stderr, flush=True)
        # XADD and XACK in one transaction: the event is never in both or neither.
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.dead, {**fields, "event": event_id, "error": error})
        pipe.xack(self.args.stream, self.args.group, event_id)
        _, acked = pipe.execute()
        self.record(event=event_id, action="ack", acked=acked, dead=True)
        return True

    def handle_all(self, entries):
        """Returns how many entries were handled and acked."""
        done = 0
        for event_id, fields in entries:
            if fields is None:  # deleted from the stream while pending
                self.r.xack(self.args.stream, self.args.group, event_id)
                continue
            if self.handle(event_id, fields):
                done += 1
            else:
                time.sleep(self.args.retry_ms / 1000)
        return done

    def read(self, start, block=None):
        reply = self.r.xreadgroup(self.args.group, self.args.consumer, {self.args.stream: start},
                                  count=self.args.batch, block=block)
        return reply[0][1] if reply else []

    def pending_own(self):
        """This consumer's own PEL: what it read but never acked (a crash)."""
        return self.read("0")

    def claim_abandoned(self):
        """Events other consumers read but did not ack for --claim-idle-ms."""
        claimed, cursor = [], "0-0"
        while True:
            reply = self.r.xautoclaim(self.args.stream, self.args.group, self.args.consumer,
                                      self.args.claim_idle_ms, start_id=cursor, count=self.args.batch)
            cursor, entries = reply[0], reply[1]
            claimed += entries
            if cursor == "0-0":
                return claimed

    def run(self):
        self.ensure_group()
        print(f"consumer {self.args.consumer}: reading {self.args.stream} as group {self.args.group}", flush=True)
        while True:
            # Own pending entries first (re-delivered in order), then other
            # consumers' abandoned ones, then new events.
            own = self.pending_own()
            if own:
                self.handle_all(own)
                continue
            claimed = self.claim_abandoned()
            if claimed:
                self.handle_all(claimed)
                continue
            new = self.read(">", block=self.args.block_ms)
            if new:
                self.handle_all(new)
            elif self.args.exit_when_idle:
                return


def main(argv=None):
    Consumer(parse_args(argv)).run()


if __name__ == "__main__":
    main()
