"""The checkout funnel (examples/funnel.tl) over generated events: Golem
Timeline (`timeline eval` on JSON lines) against DuckDB (SQL self-joins on
CSV of the same events), in one interleaved run, with a check that both
count the same users at every step. Writes its section of BENCHMARKS.md.

usage: python3 bench/peers/funnel.py [--events 1000000] [--rounds 3] [--out BENCHMARKS.md]

Run after `cargo build --release -p timeline-local`; DuckDB comes from the
virtual environment bench/peers/run.py sets up.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import run  # noqa: E402  (the peer benchmark's helpers)

BEGIN, END = "<!-- funnel: written by bench/peers/funnel.py -->", "<!-- /funnel -->"
MINUTE = 60_000


def generate(events, seed, jsonl, csv):
    """Users who view products, some of whom put one in the cart and pay,
    with searches in between; 5% of events arrive late, 1% twice."""
    rng = random.Random(seed)
    rows = []
    user = 0
    while len(rows) < events:
        user += 1
        name = f"u{user:07d}"
        t = rng.randrange(0, 24 * 60 * MINUTE)
        seq = 0

        def add(action, at):
            nonlocal seq
            seq += 1
            rows.append((at, name, f"{name}-{seq}", action))

        for _ in range(rng.randint(1, 2)):
            add("view", t)
            for _ in range(rng.randint(0, 2)):
                add("search", t + rng.randrange(0, 30 * MINUTE))
            if rng.random() < 0.6:
                cart = t + rng.randrange(0, 90 * MINUTE)
                add("cart", cart)
                if rng.random() < 0.6:
                    add("pay", cart + rng.randrange(0, 40 * MINUTE))
            t += rng.randrange(10 * MINUTE, 120 * MINUTE)
    rows = rows[:events]
    arrival = [(r[0] + (rng.randrange(MINUTE, 30 * MINUTE) if rng.random() < 0.05 else 0), i) for i, r in enumerate(rows)]
    arrival.sort()
    order = [i for _, i in arrival]
    order += [i for i in order if rng.random() < 0.01]
    with open(jsonl, "w") as j, open(csv, "w") as c:
        c.write("user,time,event_id,action\n")
        for i in order:
            t, u, eid, action = rows[i]
            j.write(f'{{"user":"{u}","time":{t},"event_id":"{eid}","action":"{action}"}}\n')
            c.write(f"{u},{t},{eid},{action}\n")
    return len(order)


def timeline_counts(path):
    counts = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            counts[row["output"]] = row["count_true"]
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(run.ROOT, "BENCHMARKS.md"))
    args = ap.parse_args()
    duckdb_python = run.python("duckdb")
    if not os.path.exists(duckdb_python):
        run.ensure_venvs()
    work = tempfile.mkdtemp(prefix="funnel-")
    jsonl, csv = os.path.join(work, "funnel.jsonl"), os.path.join(work, "funnel.csv")
    lines = generate(args.events, 7, jsonl, csv)
    run.log(f"funnel: {lines} events in {work}")
    query = "@" + os.path.join(run.ROOT, "examples", "funnel.tl")
    times = {"timeline": [], "duckdb": []}
    peaks = {"timeline": [], "duckdb": []}
    answers = {}
    for r in range(args.rounds):
        out = os.path.join(work, "timeline.out")
        with open(out, "w") as f:
            took, peak, _, _ = run.run_measured([run.TIMELINE, "eval", "-q", query, "-e", jsonl], stdout=f)
        times["timeline"].append(took)
        peaks["timeline"].append(peak)
        answers["timeline"] = timeline_counts(out)
        out = os.path.join(work, "duckdb.json")
        took, peak, _, _ = run.run_measured([duckdb_python, os.path.join(run.HERE, "funnel_duckdb.py"), csv, out])
        times["duckdb"].append(took)
        peaks["duckdb"].append(peak)
        with open(out) as f:
            answers["duckdb"] = json.load(f)
        run.log(f"round {r + 1}: timeline {times['timeline'][-1]:.2f} s, duckdb {times['duckdb'][-1]:.2f} s")
    # The state the leaves keep, per user (eval --stats).
    def state_per_key(q):
        p = subprocess.run([run.TIMELINE, "eval", "-q", q, "-e", jsonl, "--stats"], capture_output=True, text=True, check=True)
        last = p.stderr.strip().splitlines()[-1]
        return float(last.rsplit("(", 1)[1].split()[0])

    funnel_state = state_per_key(query)
    absent_state = state_per_key('from shop key user; absent_after(action == "cart", action == "pay", 30m)')
    if answers["timeline"] != answers["duckdb"]:
        sys.exit(f"the engines disagree: {answers}")
    t, d = statistics.median(times["timeline"]), statistics.median(times["duckdb"])
    tm, dm = statistics.median(peaks["timeline"]) / 1024, statistics.median(peaks["duckdb"]) / 1024
    a = answers["timeline"]
    section = "\n".join([
        BEGIN,
        "## Funnel: sequence against SQL self-joins",
        "",
        f"`python3 bench/peers/funnel.py --events {args.events} --rounds {args.rounds}` "
        f"({run.machine()}): the checkout funnel of `examples/funnel.tl` over {lines:,} generated events "
        f"(users viewing, carting and paying; 5% late, 1% twice), `timeline eval` on JSON lines against "
        f"DuckDB {run.versions().get('duckdb', '')} joining the same events as CSV, medians of "
        f"{args.rounds} interleaved rounds. Both count the same users at every step: "
        f"viewed {a['viewed']:,}, carted within 1 h {a['carted']:,}, paid within 1 h {a['paid']:,}.",
        "",
        "| engine | seconds | events/s | peak memory |",
        "|---|---:|---:|---:|",
        f"| Golem Timeline (`sequence`) | {t:.2f} | {lines / t:,.0f} | {tm:,.0f} MB |",
        f"| DuckDB (self-joins) | {d:.2f} | {lines / d:,.0f} | {dm:,.0f} MB |",
        "",
        f"Golem Timeline runs the funnel at {d / t:.1f}x DuckDB's speed with {tm / dm:.2f} of its memory. "
        "A `sequence` leaf keeps the matching events of each step (time and id, about 32 bytes each plus "
        "a long id) until the sequence completes, then only those at or before the completion; an "
        "`absent_after` leaf keeps its starts and completions. Leaf state per user, from "
        f"`timeline eval --stats` on the same events: {funnel_state:,.0f} bytes for the funnel's three "
        f"leaves (one `has_existed`, two `sequence`), {absent_state:,.0f} bytes for "
        "`absent_after(action == \"cart\", action == \"pay\", 30m)`.",
        END,
    ])
    text = open(args.out).read() if os.path.exists(args.out) else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
