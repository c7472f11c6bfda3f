#!/bin/sh
# Regenerates the safetensors test files into a temporary folder and checks
# that the committed ones are byte for byte what generate.py writes.
# Exits 77 (CTest's skip) when no Python with PyTorch is found ($PYTHON, else
# python3, else Debian's /usr/bin/python3), as tests/parity/check_generator.sh
# does. Files in the folder that generate.py does not write (this script,
# README.md) are not compared.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
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
"$py" "$here/generate.py" --out "$tmp"
status=0
for f in $(cd "$tmp" && find . -type f | sort); do
    if ! cmp -s "$tmp/$f" "$here/$f"; then
        echo "check_generator: $f differs from what generate.py writes"
        status=1
    fi
done
n=$(cd "$tmp" && find . -type f | wc -l)
[ "$status" -eq 0 ] && echo "check_generator: all $n generated files match the committed ones"
exit $status
