#!/usr/bin/env bash
# `timeline eval` of CIRR over about 1M generated events: wall time, events/s
# and peak memory of the whole process, best of 5 runs.
#   scripts/bench-eval.sh [sessions]     (23600 sessions ≈ 1.0M events)
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-23600}
dir=${BENCH_DIR:-target/bench-data}
mkdir -p "$dir"
cargo build --release -p timeline-local --quiet
bin=target/release/timeline
data="$dir/cirr-$sessions.jsonl"
[ -f "$data" ] || "$bin" gen cirr --sessions "$sessions" --seed 1 -o "$data"
events=$(wc -l < "$data")
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
best=""
for run in 1 2 3 4 5; do
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$bin" eval -q @examples/cirr.tl -e "$data" --stats > "$dir/out.jsonl" 2> "$dir/stats.txt"
  read -r wall rss < "$dir/time.txt"
  echo "run $run: ${wall}s wall, peak RSS ${rss} KiB; $(cat "$dir/stats.txt")"
  if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; best_rss=$rss; fi
done
awk -v e="$events" -v w="$best" -v r="$best_rss" 'BEGIN{
  printf "best: %d events in %.2f s = %.2f M events/s end to end; peak RSS %.0f MiB = %.0f bytes/event\n",
    e, w, e/w/1e6, r/1024, r*1024/e }'
