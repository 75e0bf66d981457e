"""CIRR in Apache Flink SQL (batch mode, local mini-cluster), the same
window-function query as Spark's.

usage: cirr_flink_sql.py EVENTS_NO_HEADER.csv OUT.csv PARALLELISM
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cirr_sql import query  # noqa: E402

from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402


def main():
    events, out = sys.argv[1], sys.argv[2]
    parallelism = sys.argv[3] if len(sys.argv) > 3 else "2"
    started = time.time()
    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    env.get_config().set("parallelism.default", parallelism)
    env.get_config().set("python.executable", sys.executable)
    env.execute_sql(f"""
        CREATE TABLE events (
          session_id STRING, `time` BIGINT, event_id STRING, cdnChange STRING,
          playerStateChange STRING, userAction STRING, bitrate BIGINT
        ) WITH (
          'connector' = 'filesystem', 'path' = 'file://{os.path.abspath(events)}', 'format' = 'csv',
          'csv.null-literal' = ''
        )""")
    print(f"startup {time.time() - started:.3f}", file=sys.stderr)
    # Flink's LAST_VALUE skips nulls.
    result = env.sql_query(query(lambda c: f"LAST_VALUE({c})"))
    rows = []
    with result.execute().collect() as it:
        for row in it:
            rows.append((row[0], row[1]))
    rows.sort()
    with open(out, "w") as f:
        f.write("key,value\n")
        for key, value in rows:
            f.write(f"{key},{value}\n")


if __name__ == "__main__":
    main()
