#!/usr/bin/env python3
"""Checks that the compiled C snippets of README.md and docs/*.md are still in the files they
mirror: each ```c block preceded by `<!-- compiled: FILE -->` must appear in
FILE (relative to the repository root) as consecutive lines, compared with
leading and trailing whitespace stripped and blank lines ignored. FILE is
compiled by the build (tests/readme_snippets.c, samples/...), so a snippet
that passes here compiles.

Usage: readme_check.py [REPO_ROOT]   (default: this script's parent folder)
"""

import os
import re
import sys


def lines(text):
    return [l.strip() for l in text.splitlines() if l.strip()]


def contains(haystack, needle):
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    readme = ""
    pages = ["README.md"] + sorted("docs/" + f for f in os.listdir(os.path.join(root, "docs"))
                                   if f.endswith(".md"))
    for page in pages:
        with open(os.path.join(root, page), encoding="utf-8") as f:
            readme += f.read() + "\n"
    blocks = re.findall(r"<!-- compiled: (\S+) -->\s*\n```c\n(.*?)```", readme, re.S)
    if not blocks:
        print("readme_check: no <!-- compiled: FILE --> snippets in README.md")
        return 1
    bad = 0
    for path, code in blocks:
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            print("readme_check: %s (named by a README snippet) does not exist" % path)
            bad += 1
            continue
        with open(full, encoding="utf-8") as f:
            source = lines(f.read())
        snippet = lines(code)
        if not contains(source, snippet):
            # Name the first line that is not where it should be.
            k = len(snippet) - 1
            while k > 0 and not contains(source, snippet[:k]):
                k -= 1
            print("readme_check: a README snippet is no longer in %s; first differing line:\n  %s"
                  % (path, snippet[k]))
            bad += 1
    print("readme_check: %d of %d snippets found in the files they mirror" % (len(blocks) - bad, len(blocks)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
