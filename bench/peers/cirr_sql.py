"""CIRR in standard SQL with window functions, for Apache Spark and Flink SQL.

The state at each change point is filled forward with LAST_VALUE ignoring
nulls over the session's events ordered by time, then event_id (the event
with the greatest id wins a tie, as the semantics order them); repeated
events (same session and event_id) are dropped first.
"""

# `{last}(x)` is the dialect's "last non-null value so far".
QUERY = """
WITH ev AS (
  SELECT session_id, `time`, event_id, cdnChange, playerStateChange, userAction FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY session_id, event_id ORDER BY `time`) AS rn FROM events
  ) WHERE rn = 1
),
bounds AS (
  SELECT session_id, MAX(`time`) AS latest,
         MIN(CASE WHEN playerStateChange = 'play' THEN `time` END) AS first_play
  FROM ev GROUP BY session_id
),
pts AS (
  SELECT session_id, `time` AS t, 0 AS kind, event_id AS eid, playerStateChange AS state, cdnChange AS cdn,
         CASE WHEN userAction = 'seek' THEN `time` END AS seek_at
  FROM ev
  UNION ALL
  SELECT session_id, `time` + 5000 AS t, 1 AS kind, CAST(NULL AS STRING) AS eid, CAST(NULL AS STRING) AS state,
         CAST(NULL AS STRING) AS cdn, CAST(NULL AS BIGINT) AS seek_at
  FROM ev WHERE userAction = 'seek'
),
filled AS (
  SELECT session_id, t,
    {last_state} AS state,
    {last_cdn} AS cdn,
    MAX(seek_at) OVER (PARTITION BY session_id ORDER BY t, kind, eid ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_seek,
    ROW_NUMBER() OVER (PARTITION BY session_id, t ORDER BY kind DESC, eid DESC) AS last_at_t
  FROM pts
),
points AS (
  SELECT session_id, t, state, cdn, last_seek,
         LEAD(t) OVER (PARTITION BY session_id ORDER BY t) AS next_t
  FROM filled WHERE last_at_t = 1
),
joined AS (
  SELECT p.session_id, p.t, p.state, p.cdn, p.last_seek, b.first_play,
         LEAST(COALESCE(p.next_t, b.latest), b.latest) AS until
  FROM points p JOIN bounds b ON p.session_id = b.session_id
  WHERE p.t < b.latest
),
cirr AS (
  SELECT session_id, SUM(until - t) AS cirr FROM joined
  WHERE state = 'buffer' AND cdn = 'CDN1' AND first_play <= t
    AND NOT (last_seek IS NOT NULL AND t < last_seek + 5000)
  GROUP BY session_id
)
SELECT b.session_id AS `key`, COALESCE(c.cirr, 0) AS `value`
FROM bounds b LEFT JOIN cirr c ON b.session_id = c.session_id
"""

WINDOW = "OVER (PARTITION BY session_id ORDER BY t, kind, eid ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"


def query(last):
    """The query with `last(column)` spelling the dialect's last non-null value."""
    return QUERY.format(last_state=f"{last('state')} {WINDOW}", last_cdn=f"{last('cdn')} {WINDOW}")
