"""The checkout funnel of examples/funnel.tl in DuckDB SQL: users who viewed,
who viewed then carted within an hour, and who viewed, carted and paid
within an hour of the view. Events are ordered by time, then event_id, as
Golem Timeline orders them (every event here has an id).

usage: python funnel_duckdb.py EVENTS.csv OUT.json
"""
import json
import sys

import duckdb

HOUR = 3_600_000
events, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(
    "CREATE TABLE e AS SELECT DISTINCT * FROM read_csv(?, header = true, "
    "columns = {'user': 'VARCHAR', 'time': 'BIGINT', 'event_id': 'VARCHAR', 'action': 'VARCHAR'})",
    [events],
)
# a <= b in event order
def after(a, b):
    return f"({b}.time > {a}.time OR ({b}.time = {a}.time AND {b}.event_id >= {a}.event_id))"

viewed = con.execute("SELECT count(DISTINCT user) FROM e WHERE action = 'view'").fetchone()[0]
carted = con.execute(
    f"""SELECT count(DISTINCT v.user) FROM e v JOIN e c
        ON c.user = v.user AND v.action = 'view' AND c.action = 'cart'
       AND {after('v', 'c')} AND c.time - v.time <= {HOUR}"""
).fetchone()[0]
paid = con.execute(
    f"""SELECT count(DISTINCT v.user) FROM e v
        JOIN e c ON c.user = v.user AND v.action = 'view' AND c.action = 'cart'
                AND {after('v', 'c')} AND c.time - v.time <= {HOUR}
        JOIN e p ON p.user = v.user AND p.action = 'pay'
                AND {after('c', 'p')} AND p.time - v.time <= {HOUR}"""
).fetchone()[0]
with open(out, "w") as f:
    json.dump({"viewed": viewed, "carted": carted, "paid": paid}, f)
