"""Golem Timeline against the engines users would pick instead, on the same
CIRR data, in one run: wall time, events/s and peak memory of each engine's
whole process tree, and a check that every engine's per-key CIRR equals
`timeline eval`'s. Writes BENCHMARKS.md and benchmarks.svg.

usage: python3 bench/peers/run.py [--sizes 100000,1000000,5000000] [--rounds 3]
                                  [--engines a,b,...] [--out BENCHMARKS.md]

Run it through scripts/bench-peers.sh, which builds the project first.
Virtual environments of the peers (0.5-0.9 GB each) live under
$GOLEM_TIMELINE_BENCH_CACHE (default ~/.cache/golem-timeline-bench).
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "bench", "peers")
CACHE = os.environ.get("GOLEM_TIMELINE_BENCH_CACHE", os.path.expanduser("~/.cache/golem-timeline-bench"))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
TIMELINE = os.path.join(TARGET, "release", "timeline")
FEEDER = os.path.join(TARGET, "release", "feeder")
EVENTS_PER_SESSION = 42  # about, for `timeline gen cirr`

# Each peer's virtual environment and what it installs (pinned).
VENVS = {
    "duckdb": ["duckdb==2.0.1", "pyarrow==26.0.1"],
    "spark": ["pyspark==4.3.0"],
    "flink": ["apache-flink==2.3.0"],
    "kaskada": ["kaskada==0.6.1", "pandas==2.3.3", "pyarrow==26.0.1"],
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def python(venv):
    return os.path.join(CACHE, venv, "bin", "python")


def ensure_venvs(engines=""):
    wanted = [w.strip().lower() for w in engines.split(",") if w.strip()]
    for name, packages in VENVS.items():
        # DuckDB writes every peer's input formats: always there.
        if name != "duckdb" and wanted and not any(w in name or name in w for w in wanted):
            continue
        marker = os.path.join(CACHE, name, ".installed-" + "-".join(p.replace("<", "lt").replace("=", "") for p in packages))
        if os.path.exists(marker):
            continue
        log(f"setting up {name} ({', '.join(packages)}) under {CACHE} ...")
        subprocess.run([sys.executable, "-m", "venv", os.path.join(CACHE, name)], check=True)
        subprocess.run([python(name), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
        open(marker, "w").close()


def flink_lib():
    site = subprocess.run([python("flink"), "-c", "import pyflink, os; print(os.path.dirname(pyflink.__file__))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return os.path.join(site, "lib")


def compile_flink_job(classes):
    os.makedirs(classes, exist_ok=True)
    subprocess.run(["javac", "-d", classes, "-cp", os.path.join(flink_lib(), "*"),
                    os.path.join(HERE, "flink", "CirrJob.java")], check=True)


def versions():
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError) as e:
            return f"unavailable ({e})"
    v = {"timeline": first_line([TIMELINE, "--version"]), "rustc": first_line(["rustc", "--version"]),
         "java": first_line(["java", "-version"])}
    for venv, package in [("duckdb", "duckdb"), ("spark", "pyspark"), ("flink", "apache-flink"), ("kaskada", "kaskada")]:
        v[package] = first_line([python(venv), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"])
    return v


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, {platform.system()} {platform.release()}"


# ---------------------------------------------------------------- data

def generate(size, work):
    sessions = max(1, round(size / EVENTS_PER_SESSION))
    d = os.path.join(work, f"{size}")
    os.makedirs(d, exist_ok=True)
    jsonl = os.path.join(d, "events.jsonl")
    if not os.path.exists(jsonl):
        subprocess.run([TIMELINE, "gen", "cirr", "--sessions", str(sessions), "--seed", "11",
                        "--late", "0.02", "--duplicates", "0.01", "-o", jsonl], check=True, stderr=subprocess.DEVNULL)
        # The peers' formats; none of this is timed.
        script = f"""
import duckdb
con = duckdb.connect()
con.execute('''COPY (SELECT session_id, time, event_id, cdnChange, playerStateChange, userAction, bitrate
  FROM read_json('{jsonl}', format='newline_delimited', columns={{session_id:'VARCHAR', time:'BIGINT',
  event_id:'VARCHAR', cdnChange:'VARCHAR', playerStateChange:'VARCHAR', userAction:'VARCHAR', bitrate:'BIGINT'}}))
  TO '{d}/events.csv' (HEADER)''')
con.execute("COPY (SELECT * FROM read_csv('{d}/events.csv')) TO '{d}/events.csv.noheader' (HEADER false)")
con.execute("COPY (SELECT * FROM read_csv('{d}/events.csv')) TO '{d}/events.parquet' (FORMAT parquet)")
con.execute('''COPY (SELECT session_id, time, event_id, cdnChange, playerStateChange, userAction,
  CAST(row_number() OVER (PARTITION BY session_id, time ORDER BY event_id) AS UBIGINT) AS subsort
  FROM (SELECT DISTINCT ON (session_id, event_id) * FROM read_csv('{d}/events.csv')) ORDER BY time, subsort)
  TO '{d}/events-dedup.parquet' (FORMAT parquet)''')
"""
        subprocess.run([python("duckdb"), "-c", script], check=True)
    events = sum(1 for _ in open(jsonl))
    return d, events


# ---------------------------------------------------------------- measuring

def group_rss_kib(pgid):
    """Resident memory of every process in process group `pgid`, in KiB (a
    JVM that outlives the Python process that started it stays counted)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def run_measured(cmd, stdout=None, extra_groups=()):
    """Runs `cmd` in a process group of its own; returns (seconds until it
    exits, peak KiB of its group plus the process groups `extra_groups`,
    stderr text, CPU seconds (user and system) of the process and the
    children it waited for).
    Memory is sampled every 100 ms (more often would take a noticeable share
    of a 2-core machine from the engine measured); the root process's own
    peak, from the kernel, is exact. The exit is waited for by a thread of
    its own, so the wall time is exact too (it was rounded up to the next
    100 ms sample before 2026-12-05). Processes of the group that outlive the
    root (a JVM shutting down) are waited for, untimed, so that they do not
    slow down the next run."""
    err = tempfile.TemporaryFile()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=stdout or subprocess.DEVNULL, stderr=err, start_new_session=True)
    exited = {}

    def wait():
        _, exited["status"], exited["usage"] = os.wait4(proc.pid, 0)
        exited["at"] = time.monotonic()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    peak = 0
    while waiter.is_alive():
        peak = max(peak, group_rss_kib(proc.pid) + sum(group_rss_kib(g) for g in extra_groups))
        waiter.join(0.1)
    status, usage = exited["status"], exited["usage"]
    took = exited["at"] - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = max(peak, usage.ru_maxrss + sum(group_rss_kib(g) for g in extra_groups))
    deadline = time.monotonic() + 60
    while group_alive(proc.pid):
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 9)
        peak = max(peak, group_rss_kib(proc.pid))
        time.sleep(0.1)
    err.seek(0)
    text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{text[-3000:]}")
    return took, peak, text, usage.ru_utime + usage.ru_stime


def measured(cmd, **kwargs):
    """(wall seconds, peak KiB, CPU seconds) of `cmd`, as `run_measured` measures them."""
    took, peak, _, cpu = run_measured(cmd, **kwargs)
    return took, peak, cpu


def read_result(path):
    with open(path) as f:
        lines = f.read().split("\n")
    return [line for line in lines[1:] if line]


class Engine:
    name = ""
    startup_heavy = False
    # Larger inputs are left out (they would take most of the run); --all-sizes runs them.
    max_events = None

    def run(self, d, out):
        raise NotImplementedError


class TimelineEval(Engine):
    name = "timeline eval (JSONL)"
    events = "events.jsonl"

    def run(self, d, out):
        with open(out, "w") as f:
            return measured([TIMELINE, "eval", "-q", f"@{ROOT}/examples/cirr.tl", "-e", f"{d}/{self.events}",
                             "--format", "csv"], stdout=f)


class TimelineEvalParquet(TimelineEval):
    """The same on the Parquet file DuckDB reads (written by DuckDB)."""
    name = "timeline eval (Parquet)"
    events = "events.parquet"


class TimelineServe(Engine):
    """`timeline serve`, durable (fsync before every acknowledgement), fed
    over HTTP by `feeder --from-file` in batches; timed from the first
    delivery to the last durable acknowledgement."""
    name = "timeline serve (durable, HTTP)"
    startup_heavy = False

    def run(self, d, out):
        data = tempfile.mkdtemp(prefix="timeline-serve-")
        server = subprocess.Popen([TIMELINE, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            base = None
            while base is None:
                line = server.stderr.readline()
                if not line:
                    raise RuntimeError("timeline serve exited")
                if "serving on " in line:
                    base = line.split("serving on ", 1)[1].strip()
            query = open(f"{ROOT}/examples/cirr.tl", "rb").read()
            urllib.request.urlopen(urllib.request.Request(f"{base}/v1/jobs?name=cirr", data=query, method="POST")).read()
            took, peak, _, _ = run_measured([FEEDER, "--from-file", f"{d}/events.jsonl", "--target", base,
                                          "--metrics-addr", "off", "--batch-size", "20000"], extra_groups=[server.pid])
            rows, after = [], None
            while True:
                url = f"{base}/v1/jobs/cirr/results?limit=100000" + (f"&after={after}" if after else "")
                page = json.loads(urllib.request.urlopen(url).read())
                rows += [(r["key"], r["value"]) for r in page["results"]]
                after = page["next_after"]
                if not after:
                    break
            with open(out, "w") as f:
                f.write("key,value\n")
                for key, value in sorted(rows):
                    f.write(f"{key},{value}\n")
            return took, peak, None  # the server's CPU time is not the feeder's
        finally:
            server.kill()
            server.wait()
            shutil.rmtree(data, ignore_errors=True)


class DuckDB(Engine):
    name = "DuckDB (SQL, ASOF joins, CSV)"
    events = "events.csv"

    def run(self, d, out):
        return measured([python("duckdb"), f"{HERE}/cirr_duckdb.py", f"{d}/{self.events}", out])


class DuckDBParquet(DuckDB):
    name = "DuckDB (SQL, ASOF joins, Parquet)"
    events = "events.parquet"


class FlinkJava(Engine):
    name = "Flink (Java KeyedProcessFunction, parallelism 2)"
    startup_heavy = True

    def __init__(self, classes):
        self.cp = f"{os.path.join(flink_lib(), '*')}:{classes}"

    def run(self, d, out):
        return measured(["java", "-Xmx6g", "-cp", self.cp, "CirrJob", f"{d}/events.csv", out, "2"])


class FlinkSql(Engine):
    name = "Flink SQL (batch, parallelism 2)"
    startup_heavy = True
    max_events = 1_500_000  # 1M events take 2.5 minutes and 3 GB; 5M about 12 minutes a run

    def run(self, d, out):
        return measured([python("flink"), f"{HERE}/cirr_flink_sql.py", f"{d}/events.csv.noheader", out, "2"])


class Kaskada(Engine):
    name = "Kaskada (timestreams, de-duplicated Parquet)"

    def run(self, d, out):
        return measured([python("kaskada"), f"{HERE}/cirr_kaskada.py", f"{d}/events-dedup.parquet", out])


class Spark(Engine):
    name = "Spark SQL (window functions, Parquet)"
    startup_heavy = True

    def run(self, d, out):
        return measured([python("spark"), f"{HERE}/cirr_spark.py", f"{d}/events.parquet", out])


# ---------------------------------------------------------------- report

def chart(results, sizes, engines, path):
    """Grouped horizontal bars of events/s (log scale), one group per size."""
    import math
    colors = ["#2f6fde", "#1f9e8a", "#d98c1f", "#9b59b6", "#c8382e", "#5d6d7e", "#27ae60", "#8e44ad"]
    bar, gap, left, width = 16, 26, 330, 520
    rows = [(s, e) for s in sizes for e in engines if (s, e.name) in results]
    height = 60 + len(rows) * (bar + 4) + len(sizes) * gap
    top = max(r["eps"] for r in results.values())
    lo = 10 ** math.floor(math.log10(max(1, min(r["eps"] for r in results.values()))))
    hi = 10 ** math.ceil(math.log10(top))
    x = lambda v: left + (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * width  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="15" font-weight="bold">CIRR: events per second (log scale), median of the runs</text>']
    p = lo
    while p <= hi:
        out.append(f'<line x1="{x(p):.1f}" y1="32" x2="{x(p):.1f}" y2="{height - 10}" stroke="#ddd"/>'
                   f'<text x="{x(p) + 2:.1f}" y="44" fill="#666">{p:,.0f}</text>')
        p *= 10
    y = 56
    for s in sizes:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{s:,} events</text>')
        y += gap - 8
        for i, e in enumerate(engines):
            r = results.get((s, e.name))
            if not r:
                continue
            out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{e.name}</text>'
                       f'<rect x="{left}" y="{y}" width="{x(r["eps"]) - left:.1f}" height="{bar}" fill="{colors[i % len(colors)]}"/>'
                       f'<text x="{x(r["eps"]) + 4:.1f}" y="{y + 12}">{r["eps"]:,.0f}</text>')
            y += bar + 4
        y += 8
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="")
    parser.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--work", default=os.path.join(CACHE, "data"))
    parser.add_argument("--all-sizes", action="store_true", help="run every engine at every size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    ensure_venvs(args.engines)
    wanted = [w.strip().lower() for w in args.engines.split(",") if w.strip()]
    chosen = lambda name: not wanted or any(w in name.lower() for w in wanted)  # noqa: E731
    engines = [TimelineEval(), TimelineEvalParquet(), TimelineServe(), DuckDB(), DuckDBParquet()]
    if chosen("flink"):
        classes = os.path.join(CACHE, "flink-classes")
        compile_flink_job(classes)
        engines += [FlinkJava(classes), FlinkSql()]
    engines += [Kaskada(), Spark()]
    engines = [e for e in engines if chosen(e.name)]
    os.makedirs(args.work, exist_ok=True)

    # Start-up: each engine on a single session.
    tiny, _ = generate(42, args.work)
    startup = {}
    for e in engines:
        if e.startup_heavy:
            took = [e.run(tiny, os.path.join(tiny, "out.csv"))[0] for _ in range(2)]
            startup[e.name] = min(took)
            log(f"start-up of {e.name}: {startup[e.name]:.2f} s")

    results = {}
    failures = []
    skipped = []
    for size in sizes:
        d, events = generate(size, args.work)
        log(f"== {events:,} events ({size:,} asked) in {d}")
        reference = None
        runs = {e.name: [] for e in engines}
        sized = [e for e in engines if args.all_sizes or e.max_events is None or events <= e.max_events]
        for e in engines:
            if e not in sized:
                skipped.append(f"{e.name} was not run at {events:,} events (its limit is {e.max_events:,}; "
                               "`--all-sizes` runs it)")
                log("   " + skipped[-1])
        for round_ in range(args.rounds):
            for e in sized:  # interleaved: one run of each engine per round
                out = os.path.join(d, f"out-{e.name.split()[0].lower()}.csv")
                try:
                    took, peak, cpu = e.run(d, out)
                except Exception as err:  # noqa: BLE001 - reported, the run goes on
                    failures.append(f"{e.name} at {events:,} events: {err}")
                    log(f"   {e.name}: FAILED {err}")
                    continue
                rows = read_result(out)
                if isinstance(e, TimelineEval) and reference is None:
                    reference = rows
                if reference is not None and rows != reference:
                    diff = next((f"{a} != {b}" for a, b in zip(rows, reference) if a != b), f"{len(rows)} rows, expected {len(reference)}")
                    failures.append(f"{e.name} at {events:,} events: per-key CIRR differs from timeline eval: {diff}")
                runs[e.name].append((took, peak, cpu))
                log(f"   round {round_ + 1} {e.name}: {took:.2f} s, {peak / 1024:.0f} MiB"
                    + (f", {cpu:.2f} s CPU" if cpu is not None else ""))
        for e in engines:
            if runs[e.name]:
                wall = statistics.median(t for t, _, _ in runs[e.name])
                peak = max(p for _, p, _ in runs[e.name])
                cpus = [c for _, _, c in runs[e.name] if c is not None]
                results[(size, e.name)] = {"events": events, "wall": wall, "eps": events / wall, "peak": peak / 1024,
                                           "runs": len(runs[e.name]),
                                           "cpu": statistics.median(cpus) if cpus else None}

    write_report(args.out, sizes, engines, results, startup, failures, skipped)
    chart(results, sizes, engines, os.path.join(os.path.dirname(args.out), "benchmarks.svg"))
    if failures:
        log("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)


def write_report(path, sizes, engines, results, startup, failures, skipped):
    v = versions()
    lines = ["# Benchmarks: Golem Timeline and the engines users would pick instead", "",
             "CIRR (connection-induced rebuffering on CDN1, `examples/cirr.tl`) per session over data from",
             "`timeline gen cirr` (2% late and 1% repeated events), on every engine, in one run.",
             "Each figure is the median of the runs, which were interleaved (one run of each engine per",
             "round); peak memory is the largest resident set of the engine's whole process tree (a JVM",
             "and its children included). Every engine's per-key CIRR was checked against `timeline eval`'s.",
             "", "Reproduce: `scripts/bench-peers.sh` (not part of CI; about 40 minutes, the first time more",
             "to install the peers).", "",
             f"Machine: {machine()}.", "",
             "Versions: " + ", ".join(val if val.lower().startswith(k) else f"{k} {val}" for k, val in v.items()) + ".", "",
             "![events per second](benchmarks.svg)", ""]
    for size in sizes:
        rows = [(e, results.get((size, e.name))) for e in engines]
        rows = [(e, r) for e, r in rows if r]
        if not rows:
            continue
        lines += [f"## {rows[0][1]['events']:,} events", "",
                  "| engine | median wall time | events/s | peak memory | median CPU time | start-up (1 session) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for e, r in rows:
            s = f"{startup[e.name]:.1f} s" if e.name in startup else ""
            cpu = f"{r['cpu']:.2f} s" if r.get("cpu") is not None else ""
            lines.append(f"| {e.name} | {r['wall']:.2f} s | {r['eps']:,.0f} | {r['peak']:,.0f} MiB | {cpu} | {s} |")
        lines.append("")
        peers = [(e, r) for e, r in rows if not e.name.startswith("timeline")]
        ours = dict((e.name, r) for e, r in rows)
        for ev_name, duck_name, what in [(TimelineEval.name, DuckDB.name, "JSONL against DuckDB on CSV"),
                                         (TimelineEvalParquet.name, DuckDBParquet.name,
                                          "Parquet against DuckDB on the same Parquet")]:
            ev, duck = ours.get(ev_name), ours.get(duck_name)
            if ev and duck:
                speed = ev["eps"] / duck["eps"]
                memory = ev["peak"] / duck["peak"]
                cpu = (f"; {duck['cpu'] / ev['cpu']:.1f}x less CPU time" if ev.get("cpu") and duck.get("cpu") else "")
                lines.append(f"- `timeline eval` on {what}: {speed:.2f}x its events/s (target: 3x) and "
                             f"{memory:.2f} of its peak memory (target: at most 0.5): "
                             f"{'met' if speed >= 3 and memory <= 0.5 else 'missed'}{cpu}.")
        if peers and TimelineEval.name in ours:
            fastest_e, fastest = max(peers, key=lambda p: p[1]["eps"])
            ev = max((r for name, r in ours.items() if name.startswith("timeline eval")), key=lambda r: r["eps"])
            speed = ev["eps"] / fastest["eps"]
            memory = ev["peak"] / fastest["peak"]
            lines.append(f"- `timeline eval` (its faster input) against the fastest peer ({fastest_e.name}): "
                         f"{speed:.2f}x its events/s (target: 3x) and {memory:.2f} of its peak memory "
                         f"(target: at most 0.5): {'met' if speed >= 3 and memory <= 0.5 else 'missed'}.")
        flink = next((r for e, r in rows if e.name.startswith("Flink (Java")), None)
        serve = ours.get(TimelineServe.name)
        if flink and serve:
            lines.append(f"- `timeline serve` (durable) against the Flink Java job: {serve['eps']:,.0f} against "
                         f"{flink['eps']:,.0f} events/s: {'faster (target met)' if serve['eps'] > flink['eps'] else 'slower (target missed)'}.")
        lines.append("")
    if skipped:
        lines += ["## Left out", ""] + [f"- {s}" for s in skipped] + [""]
    if failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in failures] + [""]
    # Sections other scripts write (bench/peers/funnel.py) are kept.
    kept = ""
    if os.path.exists(path):
        old = open(path).read()
        begin, end = "<!-- funnel: written by bench/peers/funnel.py -->", "<!-- /funnel -->"
        if begin in old and end in old:
            kept = "\n" + old[old.index(begin): old.index(end) + len(end)] + "\n"
    with open(path, "w") as f:
        f.write("\n".join(lines) + kept)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
