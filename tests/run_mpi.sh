#!/usr/bin/env bash
# Runs an MPI program the way clbn's tests need it, on a workstation, in a
# container or in CI:   tests/run_mpi.sh NP PROGRAM [ARGS...]
# With Open MPI: --oversubscribe (more ranks than cores: -np 4 on 2 cores),
# --allow-run-as-root only when running as root (containers, CI), and the
# shared-memory transport without its single-copy mechanism (CMA is often
# blocked in containers). MPIEXEC names the launcher (default: mpiexec on PATH).
# The job is stopped after CLBN_MPI_TIMEOUT seconds (default 300), so a hang
# fails the test instead of blocking it, and the ranks go with mpiexec.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NP PROGRAM [ARGS...]" >&2
  exit 2
fi
np=$1
shift
launcher=${MPIEXEC:-mpiexec}
if ! command -v "$launcher" >/dev/null 2>&1; then
  echo "run_mpi: $launcher not found (Debian: apt-get install openmpi-bin, or scripts/deps.sh)" >&2
  exit 1
fi
flags=()
if "$launcher" --version 2>&1 | grep -qi -e "open mpi" -e "openrte"; then
  flags+=(--oversubscribe)
  export OMPI_MCA_rmaps_base_oversubscribe=1
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
  if [ "$(id -u)" -eq 0 ]; then
    flags+=(--allow-run-as-root)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
fi
# Under AddressSanitizer (scripts/sanitize.sh asan) the ranks keep every check
# but leak detection: Open MPI's components, dlopen()ed and unloaded again by
# MPI_Finalize, leave allocations LeakSanitizer cannot attribute (frames of
# "<unknown module>"), so they cannot be suppressed by name.
if [ -n "${ASAN_OPTIONS+x}" ]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
exec timeout -k 15 "${CLBN_MPI_TIMEOUT:-300}" "$launcher" "${flags[@]}" -np "$np" "$@"
