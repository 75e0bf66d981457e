#!/usr/bin/env bash
# Property-based test of the HTTP API: Schemathesis generates requests from
# the OpenAPI document a running `timeline serve` serves (/v1/openapi.json)
# and checks that none gets a server error and every response matches its
# schema; then the server must still answer. Uses $TIMELINE_BIN, or the debug
# binary under $CARGO_TARGET_DIR (or target/), built only if missing; Schemathesis comes
# from scripts/setup.sh (a venv, see API_FUZZ_VENV there).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${API_FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/golem-timeline/api-fuzz-venv}"
st="$venv/bin/st"
[ -x "$st" ] || { echo "test-api-fuzz: no Schemathesis in $venv; run scripts/setup.sh" >&2; exit 1; }

bin="${TIMELINE_BIN:-${CARGO_TARGET_DIR:-target}/debug/timeline}"
[ -x "$bin" ] || cargo build --locked -p timeline-local --bin timeline

work="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=info "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" 2>"$work/server.log" &
server=$!
base=""
for _ in $(seq 100); do
    base="$(sed -n 's/.*serving on \(http:\/\/[^ ]*\).*/\1/p' "$work/server.log" | head -1)"
    [ -n "$base" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$base" ] || { echo "test-api-fuzz: the server did not start" >&2; exit 1; }

# A job and a few events, so that reads have something to read.
curl -sf --data-binary 'duration_where(has_existed(a == 1))' "$base/v1/jobs?name=fuzz" >/dev/null
printf '%s\n' '{"session_id": "s1", "time": 1, "a": 1}' '{"session_id": "s1", "time": 5, "a": 2}' |
    curl -sf --data-binary @- "$base/v1/events" >/dev/null

(cd "$work" && "$st" --config-file "$OLDPWD/scripts/api-fuzz.toml" run "$base/v1/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples 30 --seed 1 --workers 2 --no-color)

curl -sf "$base/v1/health" >/dev/null || { echo "test-api-fuzz: the server stopped answering" >&2; exit 1; }
echo "test-api-fuzz: ok"
