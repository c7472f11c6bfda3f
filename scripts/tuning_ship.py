#!/usr/bin/env python3
"""Turns tuning database files (docs/tuning.md) into lines for the database
compiled into clbn (src/tuning_shipped.c): each valid entry with its kernels
field made "any" and its checksum recomputed, as a C string literal.

    python3 scripts/tuning_ship.py [--min-log2-elements E]
        [--table TABLE --max-ratio R] FILE... >> lines

Only entries of shape classes with at least 2^E elements are kept (default
20), so that the small shapes of the test suite keep the defaults. With
--table (clbn-tune's output for the same run), only the classes whose last
row there has parameters other than the defaults and a tuned/default ratio
below R (timed alternately in the same run) are kept: on a busy machine a
tuner's win that the table does not show again is noise."""
import sys

HEADER = "# clbn tuning database 1\n"

# src/geometry.c's defaults on a CPU without CLBN_* overrides: pairs equal to
# these are dropped (databases older than the diff-only entries held all)
DEFAULTS = {"group": 64, "norm_group": 64, "tile_target": 32768, "tile_min": 4096,
            "groups_per_cu": 4, "splits_per_cu": 8, "splits_min": 16, "item_elements": 512,
            "nhwc_wide_pixels": 4, "small_elements": 262144, "small_items_per_cu": 2,
            "rows_spatial": 256, "rows_run": 2048, "rows_item_values": 65536,
            "rows_items_per_cu": 8, "rows_group": 8, "flat_item": 1024, "channel_bytes": 2097152,
            "channel_groups_per_cu": 4, "channel_min_s": 64, "channel_cols": 512,
            "stream_bytes": 48 << 20, "gpu_geometry": 0}


def fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def log2_floor(v):
    return v.bit_length() - 1


def table_classes(path, max_ratio):
    """The shape classes (as src/tuning_db.c forms them) kept by the table."""
    last = {}
    ops = {"infer": "fwd_infer", "train": "fwd_train", "bwd": "bwd"}
    for line in open(path):
        f = line.split()
        if len(f) < 8 or line.startswith("#") or f[0] == "shape":
            continue
        try:
            n, c, s = (int(v) for v in f[0].split("x"))
            ratio = float(f[6])
        except ValueError:
            continue
        nhwc = f[1] == "nhwc"
        sb = 0 if s == 1 else 1 if s < 8 else 2 if s < 64 else 3 if s < 256 else 4 if s < 4096 else 5
        aligned = (c % 8 == 0) if nhwc else (s % 8 == 0)
        cls = "%s %s %s f0 e%d c%d s%d a%d" % (f[2], f[1], ops[f[3]], log2_floor(n * c * s),
                                                log2_floor(c), sb, int(aligned))
        last[cls] = ratio < max_ratio and "(defaults)" not in line
    return {k for k, keep in last.items() if keep}


def main(argv):
    min_e = 20
    files = []
    keep = None
    table, max_ratio = None, 0.9
    i = 0
    while i < len(argv):
        if argv[i] == "--min-log2-elements":
            min_e = int(argv[i + 1])
            i += 2
        elif argv[i] == "--table":
            table = argv[i + 1]
            i += 2
        elif argv[i] == "--max-ratio":
            max_ratio = float(argv[i + 1])
            i += 2
        else:
            files.append(argv[i])
            i += 1
    if table:
        keep = table_classes(table, max_ratio)
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
            f[1] = "any"
            f[7] = " ".join(kv for kv in f[7].split()
                            if DEFAULTS.get(kv.split("=")[0]) != int(kv.split("=")[1]))
            body = "\t".join(f[:9])
            entry = body + "\t%08x\n" % fnv1a(body.encode())
            lit = entry.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
            print(f'    "{lit}",')


if __name__ == "__main__":
    main(sys.argv[1:])
