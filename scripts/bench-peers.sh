#!/usr/bin/env bash
# Golem Timeline against DuckDB, Apache Flink (Java and SQL), Kaskada and
# Apache Spark on the same CIRR data, in one run; writes BENCHMARKS.md and
# benchmarks.svg. Not part of CI: about 40 minutes, more the first time (the
# peers are installed into virtual environments under
# ${GOLEM_TIMELINE_BENCH_CACHE:-~/.cache/golem-timeline-bench}).
#
#   scripts/bench-peers.sh [--sizes 100000,1000000,5000000] [--rounds 3] [--engines duckdb,flink]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v java >/dev/null && command -v javac >/dev/null || {
    echo "bench-peers: needs Java 17 or later (java and javac) for Flink and Spark" >&2
    exit 1
}
scripts/setup.sh >/dev/null
cargo build --release --locked -p timeline-local -p timeline-feeder
exec python3 bench/peers/run.py "$@"
