#!/usr/bin/env bash
# Runs a program under Oclgrind (the OpenCL device simulator) with its race and
# API checks, and fails on any diagnostic: Oclgrind itself exits with the
# program's status whatever it finds, so its log is the verdict.
# Usage: scripts/oclgrind_check.sh [oclgrind options --] PROGRAM [ARGS...]
# e.g.   scripts/oclgrind_check.sh --max-wgsize 64 --local-mem-size 16384 -- build/test/tests/check_kernels
# (--uninitialized is not used: it crashes inside Oclgrind 21.10.)
set -uo pipefail
opts=()
if [[ " $* " == *" -- "* ]]; then
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
oclgrind --data-races --check-api "${opts[@]}" --log "$log" "$@"
rc=$?
secs=$(( $(date +%s) - start ))
if [ -s "$log" ]; then
  echo "oclgrind ${opts[*]}: $(grep -c . "$log") lines of diagnostics from $*:" >&2
  head -n 60 "$log" >&2
  exit 1
fi
echo "oclgrind ${opts[*]:-(default limits)}: $* exited $rc, no diagnostics, ${secs} s"
exit $rc
