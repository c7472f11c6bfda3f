#!/bin/sh
# Runs Python with the clbn package of this source tree (python/) on the path,
# using the first interpreter that has pyopencl and numpy (and pytest, when the
# arguments start with "-m pytest"): $PYTHON when set, else python3, else
# /usr/bin/python3 (Debian's python3-pyopencl lives there, which a pyenv or
# virtualenv python3 earlier in PATH would hide). Exits 77 (CTest's skip) when
# there is none. CLBN_LIBRARY, when set, names the libclbn to load.
#
# Usage: python/run.sh -m pytest -q python/tests      (the binding's tests)
#        python/run.sh samples/python/resnet_block.py
set -eu
here=$(cd "$(dirname "$0")" && pwd)
need="import pyopencl, numpy"
[ "${1:-}" = "-m" ] && [ "${2:-}" = "pytest" ] && need="$need, pytest"
py=
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "$need" >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
if [ -z "$py" ]; then
    echo "python/run.sh: no python3 that can \"$need\"; skipped"
    exit 77
fi
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# No .pyc files or .pytest_cache in the source tree.
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE
exec "$py" "$@"
