#!/usr/bin/env python3
"""Checks the relative links of README.md, monitoring/README.md and docs/: every linked file
exists and every #anchor names a heading of the page it points to (GitHub's
anchor rules: lowercase, punctuation dropped, spaces become dashes). Also
fails on references to files outside the repository (../shared, SPEC).
Standard library only; exit status 1 when anything is wrong."""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
OUTSIDE = re.compile(r"\.\./shared|SPEC section|\bSPEC\b")


def anchors(path):
    found = set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            if in_code or not line.startswith("#"):
                continue
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            found.add(title.replace(" ", "-"))
    return found


def main():
    pages = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "monitoring", "README.md")]
    pages += sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    bad = []
    for page in pages:
        rel_page = os.path.relpath(page, ROOT)
        with open(page, encoding="utf-8") as f:
            text = f.read()
        if rel_page != "docs/bench/membership.md":
            for m in OUTSIDE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{rel_page}:{line}: refers outside the repository: {m.group(0)}")
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            line = text.count("\n", 0, m.start()) + 1
            if not os.path.exists(dest):
                bad.append(f"{rel_page}:{line}: {target}: no such file")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                bad.append(f"{rel_page}:{line}: {target}: no such heading")
    for b in bad:
        print(b)
    print(f"doc links: {len(pages)} pages, {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
