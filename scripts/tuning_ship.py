#!/usr/bin/env python3
"""Turns tuning database files (docs/tuning.md) into lines for the database
compiled into clbn (src/tuning_shipped.c): each valid entry with its kernels
field made "any" and its checksum recomputed, as a C string literal.

    python3 scripts/tuning_ship.py [--min-log2-elements E] FILE... >> lines

Only entries of shape classes with at least 2^E elements are kept (default
20), so that the small shapes of the test suite keep the defaults."""
import sys

HEADER = "# clbn tuning database 1\n"


def fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def main(argv):
    min_e = 20
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--min-log2-elements":
            min_e = int(argv[i + 1])
            i += 2
        else:
            files.append(argv[i])
            i += 1
    for path in files:
        text = open(path, "rb").read().decode("utf-8", "replace")
        if not text.startswith(HEADER):
            print(f"{path}: not a clbn tuning database", file=sys.stderr)
            continue
        for line in text[len(HEADER):].split("\n")[:-1]:
            f = line.split("\t")
            if len(f) != 10 or f[0] != "clbn-tuning-1":
                continue
            body = "\t".join(f[:9])
            if fnv1a(body.encode()) != int(f[9], 16):
                continue
            e = int(next(t for t in f[6].split() if t.startswith("e"))[1:])
            if e < min_e:
                continue
            f[1] = "any"
            body = "\t".join(f[:9])
            entry = body + "\t%08x\n" % fnv1a(body.encode())
            lit = entry.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
            print(f'    "{lit}",')


if __name__ == "__main__":
    main(sys.argv[1:])
