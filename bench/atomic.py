"""What exactly-once costs: N tasks that each add 1 to one row (of 1,000), drained by
``offload worker --burst`` with no other flags, with ``atomic=True`` (the write and the
task's success in one transaction) and without (the write commits on its own, the
outcome is recorded in the worker's batch). Rounds alternate, so both see the same
machine. Every run is verified: every task SUCCESSFUL and the rows sum to N.

    .venv/bin/python bench/atomic.py --db both --report
    .venv/bin/python bench/atomic.py --db both --report --conn-max-age 60

``--conn-max-age`` sets Django's ``CONN_MAX_AGE`` (default 0, Django's: each task's
connection closes at its end, so on PostgreSQL every task opens a new one).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import progress, run_each, save_rows, setup_django, worker_cmd, worker_env  # noqa: E402

ROWS = 1000


def drain(db, tasks, atomic):
    from django.db import connection

    from bench.tasks import bump
    from offload import bulk_enqueue
    from offload.models import TaskRow

    TaskRow.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_counter")
        cursor.execute("CREATE TABLE bench_counter (id integer PRIMARY KEY, value integer NOT NULL)")
        cursor.executemany("INSERT INTO bench_counter (id, value) VALUES (%s, 0)",
                           [(i,) for i in range(ROWS)])
    bulk_enqueue(bump.using(atomic=atomic), [((i % ROWS,), {}) for i in range(tasks)])
    subprocess.run(worker_cmd("--burst"), env=worker_env(db), check=True, timeout=1800)
    ok = TaskRow.objects.filter(status="SUCCESSFUL").count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(value) FROM bench_counter")
        [(total,)] = cursor.fetchall()
    if ok != tasks or total != tasks:
        sys.exit(f"[{db}] atomic={atomic}: {ok} of {tasks} SUCCESSFUL, counter {total}")
    first = TaskRow.objects.order_by("started_at").values_list("started_at", flat=True).first()
    last = TaskRow.objects.order_by("-finished_at").values_list("finished_at", flat=True).first()
    return tasks / (last - first).total_seconds()


def measure(db, tasks, rounds):
    setup_django(db)
    rates = {True: [], False: []}
    for n in range(rounds):
        for atomic in (False, True):
            t0 = time.perf_counter()
            rates[atomic].append(drain(db, tasks, atomic))
            progress(f"[{db}] round {n + 1}/{rounds}, atomic={atomic}: "
                     f"{rates[atomic][-1]:,.0f} tasks/s ({time.perf_counter() - t0:.1f} s)")
    plain, atomic = statistics.median(rates[False]), statistics.median(rates[True])
    return {"system": "offload", "db": db, "metric": "atomic_drain", "tasks": tasks,
            "rounds": rounds, "plain_per_s": round(plain), "atomic_per_s": round(atomic),
            "plain_range": [round(min(rates[False])), round(max(rates[False]))],
            "atomic_range": [round(min(rates[True])), round(max(rates[True]))],
            "change_pct": round((atomic / plain - 1) * 100, 1), "flags": "--burst (no others)",
            "conn_max_age": float(os.environ.get("BENCH_CONN_MAX_AGE", 0))}


def report(rows, chart_path):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Tasks that write one row: drained with and without atomic=True (tasks/s)")
    for col in ("database", "CONN_MAX_AGE", "tasks", "at-least-once", "atomic=True", "change"):
        table.add_column(col, justify="left" if col == "database" else "right")
    def rate(r, kind):
        low, high = r[f"{kind}_range"]
        return f"{r[f'{kind}_per_s']:,} ({low:,}–{high:,})"

    for r in rows:
        table.add_row(r["db"], f"{r['conn_max_age']:g}", f"{r['tasks']:,}", rate(r, "plain"), rate(r, "atomic"),
                      f"{r['change_pct']:+.1f} %")
    Console(width=150).print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["plain_per_s"] for r in rows], width=0.4, color="#63b3ed",
           label="at-least-once")
    ax.bar([i + 0.2 for i in x], [r["atomic_per_s"] for r in rows], width=0.4, color="#2b6cb0",
           label="atomic=True")
    ax.set_xticks(list(x), [r["db"] for r in rows])
    ax.set_ylabel("tasks/s (median of the rounds)")
    ax.set_title("Tasks that write one row, offload worker --burst")
    ax.legend()
    fig.tight_layout()
    fig.savefig(chart_path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conn-max-age", type=float, default=0.0)
    parser.add_argument("--report", action="store_true",
                        help="run each database, print the table and draw the chart")
    args = parser.parse_args()
    if args.report:
        from bench.run import run_json

        save_rows("atomic", run_json([sys.executable, __file__, "--db", args.db, "--tasks",
                                      str(args.tasks), "--rounds", str(args.rounds),
                                      "--conn-max-age", str(args.conn_max_age)], "offload"),
                  report)
        return
    os.environ["BENCH_CONN_MAX_AGE"] = str(args.conn_max_age)
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"]}):
        print(json.dumps(measure(args.db, args.tasks, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
