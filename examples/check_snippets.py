#!/usr/bin/env python3
"""Checks that docs/clients.md shows every client snippet exactly as the file
that examples/run-all.sh runs (or, for go-redis and Jedis, keeps), so the
docs and the tested code cannot drift apart. Standard library only."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = [
    "examples/clients/python/campaign.py",
    "examples/clients/node/campaign.mjs",
    "examples/clients/go/main.go",
    "examples/clients/java/CampaignJedis.java",
]
RUST = "examples/login-service/src/main.rs"
RUST_BEGIN, RUST_END = "// redis-rs: CAMPAIGN.ADD", "// end of the redis-rs snippet"


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def rust_snippet():
    lines = read(RUST).splitlines(keepends=True)
    begin = next(i for i, line in enumerate(lines) if line.startswith(RUST_BEGIN))
    end = next(i for i, line in enumerate(lines) if line.startswith(RUST_END))
    # The lines between the two markers, without the README pointer.
    return "".join(line for line in lines[begin + 1:end] if "README" not in line)


def main():
    readme = read("docs/clients.md")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", readme, flags=re.S | re.M)
    snippets = [(path, read(path)) for path in FILES] + [(RUST + " (redis-rs block)", rust_snippet())]
    failed = 0
    for name, text in snippets:
        if any(text.strip() in block for block in blocks):
            print(f"  ok  docs/clients.md shows {name}")
        else:
            print(f"  FAIL  docs/clients.md does not show {name} as it is")
            failed += 1
    print(f"snippets: {len(snippets) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
