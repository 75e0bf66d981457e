#!/usr/bin/env bash
# Golem Timeline against DuckDB, Apache Flink (Java and SQL), Kaskada and
# Apache Spark on the same CIRR data, in one run; writes BENCHMARKS.md and
# benchmarks.svg. Not part of CI: about 40 minutes, more the first time (the
# peers are installed into virtual environments under
# ${GOLEM_TIMELINE_BENCH_CACHE:-~/.cache/golem-timeline-bench}).
#
#   scripts/bench-peers.sh [--sizes 100000,1000000,5000000] [--rounds 3] [--engines duckdb,flink]
#
# `timeline eval` and DuckDB each run on two inputs: JSON lines and CSV, and
# the same Parquet file. `--engines "timeline eval,duckdb"` runs those four
# alone (no Java needed). Binaries come from $CARGO_TARGET_DIR if set.
set -euo pipefail
cd "$(dirname "$0")/.."
engines=$(printf '%s\n' "$@" | sed -n 's/^--engines=\{0,1\}//p' | tr 'A-Z' 'a-z')
[ -z "$engines" ] && engines=$(printf '%s\n' "$@" | grep -A1 -x -- --engines | tail -n1 | tr 'A-Z' 'a-z')
if [ -z "$engines" ] || [[ "$engines" == *flink* || "$engines" == *spark* ]]; then
    command -v java >/dev/null && command -v javac >/dev/null || {
        echo "bench-peers: needs Java 17 or later (java and javac) for Flink and Spark" >&2
        exit 1
    }
fi
scripts/setup.sh >/dev/null
cargo build --release --locked -p timeline-local -p timeline-feeder
exec python3 bench/peers/run.py "$@"
