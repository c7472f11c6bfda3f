#!/bin/sh
# Builds the API reference (HTML) from include/clbn.h with doxygen, warnings
# as errors: docs/make_docs.sh [OUTPUT_DIR]   (default build/docs; open
# OUTPUT_DIR/html/index.html). Exits 77 (CTest's skip) without doxygen
# (Debian: apt-get install doxygen, or scripts/deps.sh).
set -eu
cd "$(dirname "$0")/.."
out=${1:-build/docs}
if ! command -v doxygen >/dev/null 2>&1; then
    echo "make_docs: doxygen not found; skipped"
    exit 77
fi
mkdir -p "$out"
# The output folder is appended to the committed configuration.
{ cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $out"; } | doxygen -
echo "make_docs: $out/html/index.html"
