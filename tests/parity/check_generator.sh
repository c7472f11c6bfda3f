#!/bin/sh
# Regenerates the PyTorch parity goldens into a temporary folder and compares
# them with the committed ones in tests/parity/data: the case.txt manifests
# must be identical (apart from the torch_version line) and every tensor must
# be bitwise equal or, with another PyTorch build, within 1e-6 relative (plus
# 1e-6 * max|value| of that tensor absolute).
#
# Usage: check_generator.sh [DATA_DIR]   (default: the data/ folder next to this script)
# Exits 77 (CTest's skip) when no Python with PyTorch is found. The Python is
# $PYTHON when set, else the first of python3 and /usr/bin/python3 that can
# import torch (Debian's python3-torch lives in /usr/bin/python3, which a
# pyenv or virtualenv python3 earlier in PATH would hide).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
data=${1:-"$here/data"}

py=
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
if [ -z "$py" ]; then
    echo "check_generator: no python3 with torch; skipped"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

"$py" "$here/generate_goldens.py" --out "$tmp"

"$py" - "$data" "$tmp" <<'EOF'
import os
import sys

import numpy as np

committed, fresh = sys.argv[1], sys.argv[2]


def manifest(path):
    with open(path) as f:
        return [l.rstrip("\n") for l in f if not l.startswith("torch_version ")]


cases = sorted(os.listdir(fresh))
bad = 0
if sorted(os.listdir(committed)) != cases:
    print("case folders differ: committed %s, generated %s" % (sorted(os.listdir(committed)), cases))
    bad += 1
for case in cases:
    a, b = os.path.join(committed, case), os.path.join(fresh, case)
    if not os.path.isdir(a):
        continue
    ma, mb = manifest(os.path.join(a, "case.txt")), manifest(os.path.join(b, "case.txt"))
    if ma != mb:
        print("%s: case.txt differs" % case)
        for la, lb in zip(ma, mb):
            if la != lb:
                print("  committed: %s\n  generated: %s" % (la, lb))
        bad += 1
        continue
    if sorted(os.listdir(a)) != sorted(os.listdir(b)):
        print("%s: files differ" % case)
        bad += 1
        continue
    nbitwise = ntensors = 0
    for line in mb:
        f = line.split()
        if not f or f[0] != "tensor":
            continue
        ntensors += 1
        ra = open(os.path.join(a, f[2]), "rb").read()
        rb = open(os.path.join(b, f[2]), "rb").read()
        if ra == rb:
            nbitwise += 1
            continue
        va, vb = np.frombuffer(ra, "<f4"), np.frombuffer(rb, "<f4")
        if va.shape != vb.shape:
            print("%s: %s: %d values committed, %d generated" % (case, f[1], va.size, vb.size))
            bad += 1
            continue
        va, vb = va.astype(np.float64), vb.astype(np.float64)
        err = np.abs(va - vb)
        tol = 1e-6 * np.abs(vb) + 1e-6 * np.max(np.abs(vb))
        if not np.all(err <= tol):
            i = int(np.argmax(err - tol))
            print("%s: %s differs: [%d] committed %.9g, generated %.9g" % (case, f[1], i, va[i], vb[i]))
            bad += 1
    print("%-18s %2d/%2d tensors bitwise equal" % (case, nbitwise, ntensors))
if bad:
    print("check_generator: %d mismatch(es): regenerate with tests/parity/generate_goldens.py "
          "or find what changed" % bad)
    sys.exit(1)
print("check_generator: the committed goldens match the generator")
EOF
