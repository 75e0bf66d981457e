#!/usr/bin/env bash
# Runs the "Run on Golem" commands of docs/golem.md (between the golem-walkthrough
# markers) against the test Golem host, unchanged but for the address, and
# checks that they print CIRR's result for afsal-mando-1 (13 s).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "test-golem-walkthrough: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
log=$(mktemp)
GOLEM_HOST_PROFILE=${GOLEM_HOST_PROFILE:-dev} scripts/golem-host.sh --listen 127.0.0.1:0 >"$log" 2>&1 &
host=$!
trap 'kill $host 2>/dev/null || true; rm -f "$log"' EXIT
addr=
for _ in $(seq 1 600); do
  addr=$(sed -n 's/.*serving on http:\/\/\(.*\)$/\1/p' "$log" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 $host 2>/dev/null || { cat "$log" >&2; echo "test-golem-walkthrough: golem-host exited" >&2; exit 1; }
  sleep 1
done
[ -n "$addr" ] || { cat "$log" >&2; echo "test-golem-walkthrough: golem-host did not start" >&2; exit 1; }
port=${addr##*:}
commands=$(awk '/<!-- golem-walkthrough -->/{on=1; next} /<!-- \/golem-walkthrough -->/{on=0} on && !/^```/' docs/golem.md)
[ -n "$commands" ] || { echo "test-golem-walkthrough: no walkthrough in docs/golem.md" >&2; exit 1; }
out=$(bash -euo pipefail -c "${commands//localhost:9006/localhost:$port}")
printf '%s\n' "$out"
last=$(printf '%s\n' "$out" | tail -n 1)
want='"value":{"Int":"13000"}'
case "$last" in
  *"$want"*) echo "test-golem-walkthrough: ok" ;;
  *) echo "test-golem-walkthrough: expected $want in the last line" >&2; exit 1 ;;
esac
