#!/usr/bin/python3
"""bench_table_check: the benchmark table the README shows is what
bench/make_table.py makes of that run's raw data.

    python3 tests/bench_table_check.py SOURCE_DIR

Finds the results folder of the README's plot (bench/results/<run>/plot.png),
copies its raw files (the CSVs and machine.txt) into a temporary folder of the
same name, runs bench/make_table.py there and compares the table.md it writes
with the committed one, line by line. Fails when a committed table was edited
by hand or make_table.py no longer reads a run's files as it did; after a
deliberate change to make_table.py, regenerate the committed table with
`python3 bench/make_table.py bench/results/<run>`. Standard library only.
"""
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    with open(os.path.join(src, "README.md")) as f:
        m = re.search(r"bench/results/([^/\s)]+)/plot\.png", f.read())
    if not m:
        print("FAIL: README.md shows no bench/results/<run>/plot.png")
        return 1
    run = m.group(1)
    folder = os.path.join(src, "bench", "results", run)
    committed = os.path.join(folder, "table.md")
    if not os.path.isfile(committed):
        print("FAIL: %s has no table.md" % folder)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, run)
        os.mkdir(out)
        for path in glob.glob(os.path.join(folder, "*.csv")) + [os.path.join(folder, "machine.txt")]:
            if os.path.isfile(path):
                shutil.copy(path, out)
        r = subprocess.run([sys.executable, os.path.join(src, "bench", "make_table.py"), out],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
        if r.returncode != 0:
            print("FAIL: make_table.py %s exited %d:\n%s" % (run, r.returncode, r.stderr))
            return 1
        with open(os.path.join(out, "table.md")) as f:
            made = f.read().splitlines()
    with open(committed) as f:
        kept = f.read().splitlines()
    diff = list(difflib.unified_diff(kept, made, "committed " + run + "/table.md", "remade",
                                     lineterm="", n=0))
    if diff:
        print("FAIL: %s/table.md differs from make_table.py's output of its raw files (%d lines):"
              % (run, sum(1 for d in diff if d[:1] in "+-") - 2))
        print("\n".join(diff[:40]))
        return 1
    print("ok: bench/results/%s/table.md (%d lines) is make_table.py's output of its raw files"
          % (run, len(kept)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
