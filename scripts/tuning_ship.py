#!/usr/bin/env python3
"""Turns tuning database files (docs/tuning.md) into lines for the database
compiled into clbn (src/tuning_shipped.c): each valid entry with its kernels
field made "any" and its checksum recomputed, as a C string literal.

    python3 scripts/tuning_ship.py [--min-log2-elements E]
        [--table TABLE | --suite DIR] [--max-ratio R] FILE... >> lines

Only entries of shape classes with at least 2^E elements are kept (default
20), so that the small shapes of the test suite keep the defaults. An entry
holds only the parameters its tuner set to other than that device's
defaults (the heuristics' choice, src/heuristics.c), and is shipped as
recorded.

Entries must also be faster than the heuristic defaults by a margin that
survives re-timing (R, default 0.9: tuned at most 0.9x untuned):
- --table TABLE (clbn-tune's output for the same run): the class's last row
  there, default and tuned timed alternately after tuning, must have
  parameters other than the defaults and a tuned/default ratio below R;
- --suite DIR (a bench/run_suite.sh results folder, whose tuning.db is the
  FILE): every configuration of the class must have its tuned median below
  R x its untuned median, where the tuned time is taken only from the rounds
  after the one that tuned (results.csv: plans that read the database in a
  later process) and, for the ResNet-50 shapes (resnet50.csv), from clbn_bench's
  own timing after tuning; a class with no such re-timed row is left out.
On a busy machine a tuner's win that is not seen again is noise."""
import csv
import os
import sys
from collections import defaultdict

HEADER = "# clbn tuning database 1\n"



def fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def log2_floor(v):
    return v.bit_length() - 1


def shape_class(dtype, layout, mode, n, c, s):
    """The shape class src/tuning_db.c forms (fused op 0)."""
    ops = {"infer": "fwd_infer", "train": "fwd_train", "bwd": "bwd", "backward": "bwd"}
    sb = 0 if s == 1 else 1 if s < 8 else 2 if s < 64 else 3 if s < 256 else 4 if s < 4096 else 5
    aligned = (c % 8 == 0) if layout == "nhwc" else (s % 8 == 0)
    return "%s %s %s f0 e%d c%d s%d a%d" % (dtype, layout, ops[mode], log2_floor(n * c * s),
                                            log2_floor(c), sb, int(aligned))


def suite_classes(folder, max_ratio):
    """The shape classes whose every configuration in the suite's results was
    re-timed tuned below max_ratio x untuned."""
    def rows(name):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            return [r for r in csv.DictReader(f) if r.get("impl") != "impl"]

    def med(v):
        v = sorted(v)
        k = len(v) // 2
        return v[k] if len(v) % 2 else 0.5 * (v[k - 1] + v[k])

    verdict = defaultdict(list)  # class -> [ok, ...]
    for name, skip_first in (("results.csv", True), ("resnet50.csv", False)):
        times = defaultdict(lambda: defaultdict(list))
        for r in rows(name):
            if r["impl"] not in ("clbn", "clbn-tuned"):
                continue
            key = (r["layout"], r["mode"], int(r["n"]), int(r["c"]), int(r["s"]))
            times[key][r["impl"]].append(float(r["median_ms"]))
        for (layout, mode, n, c, s), t in times.items():
            tuned = t.get("clbn-tuned", [])[1 if skip_first else 0:]
            if not tuned or not t.get("clbn"):
                continue
            cls = shape_class("f32", layout, mode, n, c, s)
            verdict[cls].append(med(tuned) < max_ratio * med(t["clbn"]))
    return {k for k, v in verdict.items() if v and all(v)}


def table_classes(path, max_ratio):
    """The shape classes (as src/tuning_db.c forms them) kept by the table."""
    last = {}
    for line in open(path):
        f = line.split()
        if len(f) < 8 or line.startswith("#") or f[0] == "shape":
            continue
        try:
            n, c, s = (int(v) for v in f[0].split("x"))
            ratio = float(f[6])
        except ValueError:
            continue
        cls = shape_class(f[2], f[1], f[3], n, c, s)
        last[cls] = ratio < max_ratio and "(defaults)" not in line
    return {k for k, keep in last.items() if keep}


def main(argv):
    min_e = 20
    files = []
    keep = None
    table, suite, max_ratio = None, None, 0.9
    i = 0
    while i < len(argv):
        if argv[i] == "--min-log2-elements":
            min_e = int(argv[i + 1])
            i += 2
        elif argv[i] == "--table":
            table = argv[i + 1]
            i += 2
        elif argv[i] == "--suite":
            suite = argv[i + 1]
            i += 2
        elif argv[i] == "--max-ratio":
            max_ratio = float(argv[i + 1])
            i += 2
        else:
            files.append(argv[i])
            i += 1
    if table:
        keep = table_classes(table, max_ratio)
    elif suite:
        keep = suite_classes(suite, max_ratio)
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
            if e < min_e or (keep is not None and f[6] not in keep):
                continue
            if not f[7].strip():
                continue  # the tuner kept the defaults: nothing to ship
            f[1] = "any"
            body = "\t".join(f[:9])
            entry = body + "\t%08x\n" % fnv1a(body.encode())
            lit = entry.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
            print(f'    "{lit}",')


if __name__ == "__main__":
    main(sys.argv[1:])
