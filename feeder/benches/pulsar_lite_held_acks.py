"""How pulsar-lite's dispatch rate depends on the messages a consumer holds
unacknowledged, per subscription type, with the official Python client.

    python3 feeder/benches/pulsar_lite_held_acks.py [MESSAGES]   # default 100000

Starts pulsar-lite (PyPI `pulsar-lite`) on a free port, creates four
subscriptions, publishes MESSAGES unbatched keyed messages, then drains each
subscription with a consumer that acknowledges at once (hold 0) or only once
12,000 later messages have arrived (as the feeder holds messages until they
are durable). Prints: subscription, messages held, messages, seconds, messages/s.
"""
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time

import pulsar
import pulsar_lite

messages = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
data = tempfile.mkdtemp()
config = os.path.join(data, "pulsar-lite.toml")
with open(config, "w") as f:
    f.write("[metrics]\nenabled = false\n")
binary = os.path.join(os.path.dirname(pulsar_lite.__file__), "bin", "pulsar-lite")
broker = subprocess.Popen(
    [binary, "--addr", f"127.0.0.1:{port}", "--db-path", os.path.join(data, "db"), "--config", config,
     "--log-level", "error"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    client = pulsar.Client(f"pulsar://127.0.0.1:{port}", logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    topic = "persistent://public/default/held"
    key_shared, shared = pulsar.ConsumerType.KeyShared, pulsar.ConsumerType.Shared
    runs = [("key-shared", key_shared, 0), ("key-shared", key_shared, 12_000),
            ("shared", shared, 0), ("shared", shared, 12_000)]
    for i, (_, kind, _) in enumerate(runs):
        client.subscribe(topic, f"sub-{i}", consumer_type=kind,
                         initial_position=pulsar.InitialPosition.Earliest).close()
    producer = client.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
    for i in range(messages):
        key = f"s{i % 4000}"
        producer.send_async(f'{{"session_id":"{key}","time":{i}}}'.encode(), None, partition_key=key)
    producer.flush()
    for i, (name, kind, hold) in enumerate(runs):
        consumer = client.subscribe(topic, f"sub-{i}", consumer_type=kind,
                                    initial_position=pulsar.InitialPosition.Earliest)
        seen, held, first = set(), collections.deque(), None
        while len(seen) < messages:
            m = consumer.receive(timeout_millis=60_000)
            first = first or time.monotonic()
            seen.add(m.message_id().serialize())
            held.append(m)
            while len(held) > hold:
                consumer.acknowledge(held.popleft())
        took = time.monotonic() - first
        print(name, hold, messages, round(took, 2), int(messages / took), flush=True)
        for m in held:
            consumer.acknowledge(m)
        consumer.close()
    client.close()
finally:
    broker.kill()
