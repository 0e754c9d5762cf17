#!/bin/sh
# Runs Myelin's load benchmarks (called by `make bench` after the Release build in build/).
# Options are passed on: --quick (smoke run), --only versions,whoami,refresh,login, --rounds N,
# --duration S. Loopback only; every run is bounded; writes bench/results/REPORT.md.
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/run_bench.py "$@"
