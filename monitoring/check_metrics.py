#!/usr/bin/env python3
"""Checks that redis_exporter (with campaign-status.lua) shows every numeric
CAMPAIGN.STATUS figure with its value. Standard library only.

    check_metrics.py REDIS_PORT METRICS_URL [NAME=VALUE | NAME>VALUE ...]

Reads CAMPAIGN.STATUS, scrapes METRICS_URL, reads CAMPAIGN.STATUS again; for
every numeric field F, redis_script_values{key="campaign_F"} ('-' as '_')
must be present and lie between the two readings (figures such as
last-flush-ms-ago move between them). The text fields must appear as their
numbers (database_connected, database_configured, role_primary,
last_error_set). Every key the alert rules and the dashboard name must be
exported, except campaign_incomplete while CAMPAIGN.STATUS has no
`incomplete` field (a newer field; the rules then stay silent). NAME=VALUE
and NAME>VALUE arguments check a scraped figure's value.
"""

import json
import os
import re
import socket
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERIES = re.compile(r'^redis_script_values\{key="([^"]+)"\} (\S+)$', re.M)
KEY_REF = re.compile(r'key="(campaign_[a-z_]+)"')


def resp_read(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [resp_read(f) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


def status(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"*1\r\n$15\r\nCAMPAIGN.STATUS\r\n")
        reply = resp_read(s.makefile("rb"))
    return dict(zip(reply[0::2], reply[1::2]))


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in SERIES.findall(text)}


def metric(field):
    return "campaign_" + field.replace("-", "_")


def referenced_keys():
    with open(os.path.join(HERE, "alerts.yml"), encoding="utf-8") as f:
        keys = set(KEY_REF.findall(f.read()))
    with open(os.path.join(HERE, "grafana-dashboard.json"), encoding="utf-8") as f:
        dash = json.load(f)
    for panel in dash["panels"]:
        for target in panel["targets"]:
            keys.update(KEY_REF.findall(target["expr"]))
    return keys


def main():
    port, url, expectations = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    before = status(port)
    scraped = scrape(url)
    after = status(port)
    failures = []
    checked = 0

    def fail(msg):
        failures.append(msg)
        print(f"  FAIL  {msg}")

    for field, value in before.items():
        if not isinstance(value, int):
            continue
        name = metric(field)
        lo, hi = sorted((value, after.get(field, value)))
        got = scraped.get(name)
        if got is None:
            fail(f"{name} (STATUS {field} = {value}) is not in /metrics")
        elif not lo <= got <= hi:
            fail(f"{name} = {got:g}, STATUS {field} read {lo} and {hi} around the scrape")
        else:
            checked += 1
    text = {
        "campaign_database_connected": 1 if before["database"] == "connected" else 0,
        "campaign_database_configured": 0 if before["database"] == "unconfigured" else 1,
        "campaign_role_primary": 1 if before["role"] == "primary" else 0,
        "campaign_last_error_set": 1 if before["last-error"] else 0,
    }
    for name, want in text.items():
        if before.get("database") != after.get("database") or before.get("role") != after.get("role"):
            fail("database or role changed during the scrape")
            break
        if scraped.get(name) != want:
            fail(f"{name} = {scraped.get(name)}, STATUS says {want}")
        else:
            checked += 1
    for key in sorted(referenced_keys()):
        if key in scraped:
            continue
        if key == "campaign_incomplete" and "incomplete" not in before:
            print("  note  campaign_incomplete: CAMPAIGN.STATUS has no `incomplete` field yet; its rule and panel stay empty")
            continue
        fail(f"{key}, named by alerts.yml or the dashboard, is not exported")
    for exp in expectations:
        m = re.fullmatch(r"([a-z_]+)(=|>)(-?\d+)", exp)
        name, op, want = m.group(1), m.group(2), float(m.group(3))
        got = scraped.get(name)
        ok = got is not None and (got == want if op == "=" else got > want)
        if ok:
            checked += 1
        else:
            fail(f"expected {name} {op} {want:g}, scraped {got}")
    print(f"  {checked} figures match ({len(scraped)} exported); {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
