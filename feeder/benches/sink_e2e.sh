#!/bin/bash
# `feeder sink` end to end against the real `timeline serve` changes stream:
# CIRR events posted in chunks to a job that records its changes, one sink to
# the in-memory test broker (`pulsar-test-broker`) and one to a webhook
# receiver (Python), both killed with kill -9 and restarted after every
# chunk. At the end the topic must hold every change of the server once, in
# order, payload and key unchanged, and the receiver every change, all
# deliveries of a change with one idempotency key.
#
#   cargo build -p timeline-local -p timeline-feeder -p pulsar-test-broker
#   SESSIONS=1500 CHUNKS=30 BATCH=20 feeder/benches/sink_e2e.sh
#
# Needs python3 with pulsar-client (scripts/setup.sh installs it). Binaries:
# $TIMELINE, $FEEDER, $BROKER (default: target/debug/...). Ports 18480,
# 16650 and 18490 must be free.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
T=${TIMELINE:-$BIN/timeline}
F=${FEEDER:-$BIN/feeder}
B=${BROKER:-$BIN/pulsar-test-broker}
D=$(mktemp -d)
trap 'kill $SP $SW "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
PIDS=()
cat > "$D/receiver.py" <<'PY'
import http.server, json, sys
out = open(sys.argv[2], "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out.write(json.dumps({"key": self.headers["Idempotency-Key"], "ids": [c["id"] for c in doc["changes"]]}) + "\n")
        out.flush()
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
"$T" serve --listen 127.0.0.1:18480 --data-dir "$D/data" > "$D/serve.log" 2>&1 & PIDS+=($!)
"$B" 127.0.0.1:16650 > "$D/broker.log" 2>&1 & PIDS+=($!)
python3 "$D/receiver.py" 18490 "$D/hook.jsonl" & PIDS+=($!)
sleep 1.5
curl -sf 'http://127.0.0.1:18480/v1/jobs?name=cirr&changes=true' --data-binary @"$ROOT/examples/cirr.tl" > /dev/null || { echo "cannot submit the job"; exit 1; }
"$T" gen cirr --sessions "${SESSIONS:-300}" -o "$D/events.jsonl"
split -n "l/${CHUNKS:-12}" "$D/events.jsonl" "$D/chunk."
sink() { "$F" sink --from http://127.0.0.1:18480 --job cirr --checkpoint "$D/$1.cp" --batch "${BATCH:-100}" --metrics-addr off "${@:2}" >> "$D/$1.log" 2>&1 & }
start() {
  sink p --pulsar-url pulsar://127.0.0.1:16650 --topic cirr-changes; SP=$!
  sink w --webhook http://127.0.0.1:18490/hook; SW=$!
}
start
for c in "$D"/chunk.*; do
  curl -sf http://127.0.0.1:18480/v1/events --data-binary @"$c" > /dev/null
  sleep 0.$((RANDOM % 4 + 1))
  kill -9 $SP $SW; wait $SP $SW 2>/dev/null
  start
done
acked() { python3 -c "import json; print(json.load(open('$D/$1.cp'))['acked'])" 2>/dev/null; }
LAST=$(curl -s 'http://127.0.0.1:18480/v1/jobs/cirr/changes?limit=1' | python3 -c 'import json,sys; print(json.load(sys.stdin)["last"])')
for _ in $(seq 1 300); do
  [ "$(acked p)" = "$LAST" ] && [ "$(acked w)" = "$LAST" ] && break
  sleep 0.2
done
echo "changes: $LAST; checkpoints: pulsar $(acked p), webhook $(acked w)"
D=$D python3 - <<'PY'
import json, os, urllib.request, pulsar
d = os.environ["D"]
after, server = 0, []
while True:
    p = json.load(urllib.request.urlopen(f"http://127.0.0.1:18480/v1/jobs/cirr/changes?after={after}&limit=10000"))
    server += p["changes"]
    if p["next"] == after:
        break
    after = p["next"]
c = pulsar.Client("pulsar://127.0.0.1:16650", logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
s = c.subscribe("persistent://public/default/cirr-changes", "check",
                initial_position=pulsar.InitialPosition.Earliest, consumer_type=pulsar.ConsumerType.Exclusive)
topic = []
while True:
    try:
        m = s.receive(timeout_millis=3000)
    except Exception:
        break
    topic.append((int(m.properties()["change_id"]), m.partition_key(), json.loads(m.data())))
    s.acknowledge(m)
c.close()
ok = [t[0] for t in topic] == [x["id"] for x in server]
ok = ok and all(t[2] == x and t[1] == x.get("key", "") for t, x in zip(topic, server))
keys = {}
for line in open(f"{d}/hook.jsonl"):
    h = json.loads(line)
    for i in h["ids"]:
        keys.setdefault(i, set()).add(h["key"])
hook_ok = sorted(keys) == [x["id"] for x in server] and all(len(k) == 1 for k in keys.values())
again = sum(len(json.loads(l)["ids"]) for l in open(f"{d}/hook.jsonl")) - len(keys)
print(f"topic: {len(topic)} messages, every change once in order, unchanged: {ok}")
print(f"webhook: every change, one key each: {hook_ok} ({again} changes delivered again)")
raise SystemExit(0 if ok and hook_ok else 1)
PY
RC=$?
echo "pulsar restarts that resumed after the producer's last sequence id: $(grep -c 'resuming after them' "$D/p.log")"
echo "webhook batches in flight at a kill, sent again: $(grep -c 'sending the batch in flight' "$D/w.log")"
exit $RC
