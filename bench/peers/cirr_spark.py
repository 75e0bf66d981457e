"""CIRR in Apache Spark SQL (local mode, all cores).

usage: cirr_spark.py EVENTS.parquet|EVENTS.csv OUT_DIR
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cirr_sql import query  # noqa: E402

from pyspark.sql import SparkSession  # noqa: E402


def main():
    events, out = sys.argv[1], sys.argv[2]
    started = time.time()
    spark = (
        SparkSession.builder.master("local[*]")
        .appName("cirr")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(f"startup {time.time() - started:.3f}", file=sys.stderr)
    if events.endswith(".parquet"):
        df = spark.read.parquet(events)
    else:
        df = spark.read.csv(events, header=True, inferSchema=False,
                            schema="session_id STRING, time BIGINT, event_id STRING, cdnChange STRING, "
                                   "playerStateChange STRING, userAction STRING, bitrate BIGINT")
    df.createOrReplaceTempView("events")
    result = spark.sql(query(lambda c: f"last({c}, true)"))
    rows = result.orderBy("key").collect()
    with open(out, "w") as f:
        f.write("key,value\n")
        for r in rows:
            f.write(f"{r['key']},{r['value']}\n")
    spark.stop()


if __name__ == "__main__":
    main()
