"""CIRR in DuckDB: SQL with ASOF joins over the change points.

usage: cirr_duckdb.py EVENTS.csv|EVENTS.parquet OUT.csv

Repeated events (same session and event_id) are dropped first. At equal
times the event with the greatest event_id wins, as the semantics order them.
"""
import sys

import duckdb

QUERY = """
WITH ev AS (
  SELECT DISTINCT ON (session_id, event_id) session_id, time, event_id, cdnChange, playerStateChange, userAction
  FROM {source}
),
bounds AS (SELECT session_id, max(time) AS latest FROM ev GROUP BY session_id),
st AS (SELECT session_id, time, arg_max(playerStateChange, event_id) AS state
       FROM ev WHERE playerStateChange IS NOT NULL GROUP BY session_id, time),
cdn AS (SELECT session_id, time, arg_max(cdnChange, event_id) AS cdn
        FROM ev WHERE cdnChange IS NOT NULL GROUP BY session_id, time),
seek AS (SELECT DISTINCT session_id, time FROM ev WHERE userAction = 'seek'),
play AS (SELECT session_id, min(time) AS first_play FROM ev WHERE playerStateChange = 'play' GROUP BY session_id),
pts AS (SELECT session_id, time AS t FROM ev UNION SELECT session_id, time + 5000 FROM seek),
spans AS (SELECT session_id, t, lead(t) OVER (PARTITION BY session_id ORDER BY t) AS next_t FROM pts),
joined AS (
  SELECT p.session_id, p.t, least(coalesce(p.next_t, b.latest), b.latest) AS until,
         s.state, c.cdn, k.time AS last_seek, pl.first_play
  FROM spans p
  JOIN bounds b ON p.session_id = b.session_id AND p.t < b.latest
  ASOF LEFT JOIN st s ON p.session_id = s.session_id AND p.t >= s.time
  ASOF LEFT JOIN cdn c ON p.session_id = c.session_id AND p.t >= c.time
  ASOF LEFT JOIN seek k ON p.session_id = k.session_id AND p.t >= k.time
  LEFT JOIN play pl ON p.session_id = pl.session_id
),
cirr AS (
  SELECT session_id, sum(until - t) AS cirr FROM joined
  WHERE state = 'buffer' AND cdn = 'CDN1' AND first_play <= t
    AND NOT (last_seek IS NOT NULL AND t < last_seek + 5000)
  GROUP BY session_id
)
SELECT b.session_id AS key, coalesce(c.cirr, 0) AS value
FROM bounds b LEFT JOIN cirr c ON b.session_id = c.session_id
ORDER BY key
"""


def main():
    events, out = sys.argv[1], sys.argv[2]
    source = f"read_parquet('{events}')" if events.endswith(".parquet") else f"read_csv('{events}')"
    con = duckdb.connect()
    con.execute(f"COPY ({QUERY.format(source=source)}) TO '{out}' (HEADER)")


if __name__ == "__main__":
    main()
