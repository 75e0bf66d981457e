"""CIRR in Kaskada: timestreams per session.

usage: cirr_kaskada.py EVENTS_DEDUP.parquet OUT.csv

Kaskada cannot drop repeated events by their event_id, nor order events of
equal time by event_id: the input is de-duplicated and carries `subsort`
(the rank of the event_id among the session's events at that time), both
computed before timing starts.
"""
import asyncio
import sys
import time
from datetime import timedelta

import kaskada as kd
import pyarrow as pa


def previous(stream):
    """The value at the previous point (`Timestream.lag(1)` fails in 0.6.1:
    "min must be less than max")."""
    last_two = stream.collect(max=2)
    return last_two[0].if_(last_two.length().eq(2))


async def main():
    events, out = sys.argv[1], sys.argv[2]
    started = time.time()
    kd.init_session()
    print(f"startup {time.time() - started:.3f}", file=sys.stderr)
    src = await kd.sources.Parquet.create(
        events, time_column="time", key_column="session_id", subsort_column="subsort", time_unit="ms"
    )
    state = src.col("playerStateChange").last()
    cdn = src.col("cdnChange").last()
    played = src.col("playerStateChange").eq("play").count_if().gt(0)
    is_seek = src.col("userAction").eq("seek")
    last_seek = src.time().if_(is_seek).last().cast(pa.int64())
    # The end of each seek's 5 s window is a point of its own.
    seek_end = src.if_(is_seek).shift_by(timedelta(seconds=5))
    now = src.time().else_(seek_end.time()).cast(pa.int64())
    seeking = last_seek.is_not_null().and_(now.lt(last_seek.add(5_000_000_000)))
    counting = played.and_(state.eq("buffer")).and_(cdn.eq("CDN1")).and_(seeking.not_())
    # Each point adds the time since the previous one if CIRR was counting then.
    step = now.sub(previous(now)).if_(previous(counting))
    total = step.sum().else_(kd.Timestream._literal(0, src._ffi_expr.session()).cast(pa.int64()))
    at_events = total.if_(src.time().is_not_null()).last()
    frame = at_events.to_pandas(kd.results.Snapshot())
    frame = frame.sort_values("_key")
    with open(out, "w") as f:
        f.write("key,value\n")
        for key, value in zip(frame["_key"], frame["result"]):
            f.write(f"{key},{0 if value != value or value is None else int(value) // 1_000_000}\n")


if __name__ == "__main__":
    asyncio.run(main())
