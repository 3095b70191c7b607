"""Noisy neighbour: tenant A enqueues 50,000 tasks of ~5 ms at once, then tenant B
sends one task every 50 ms while A's backlog drains, on one server with no flags
(``offload worker``, what a user gets). Reports B's wait (enqueue → start) with fair
sharing (each tenant's tasks carry ``fair_key``) and without (strict FIFO within the
priority), and writes a chart.

    .venv/bin/python bench/fairness.py --db both
    .venv/bin/python bench/fairness.py --db postgres --fair yes --tenant-a 20000
"""

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, progress, run_each, save_rows, setup_django, start_worker, wait_bars  # noqa: E402


def measure(db, tenant_a, tenant_b, every, fair):
    setup_django(db)
    from django.db import connection

    from bench.tasks import sleep5, stamp_sleep5
    from offload import bulk_enqueue
    from offload.models import TaskRow

    a_task, b_task = sleep5, stamp_sleep5
    if fair:
        a_task, b_task = sleep5.using(fair_key="tenant:a"), stamp_sleep5.using(fair_key="tenant:b")
    progress(f"[{db}] tenant A enqueues {tenant_a:,} tasks of 5 ms (fair sharing {'on' if fair else 'off'})")
    bulk_enqueue(a_task, [((), {})] * tenant_a)
    if db == "postgres":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE offload_task")
    server = start_worker(db)
    try:
        deadline = time.monotonic() + 60
        while TaskRow.objects.filter(status="SUCCESSFUL").count() < 500:
            if time.monotonic() > deadline:
                sys.exit("the server did not get busy")
            time.sleep(0.1)
        progress(f"[{db}] server busy; tenant B sends {tenant_b} tasks, one every {every * 1000:.0f} ms")
        sent, enqueued = {}, {}
        start = time.monotonic()
        for i in range(tenant_b):
            time.sleep(max(0.0, start + i * every - time.monotonic()))
            t0 = time.time()
            task_id = b_task.enqueue().id
            sent[task_id], enqueued[task_id] = t0, time.time()
        a_left = TaskRow.objects.filter(status="READY").exclude(pk__in=sent).count()
        deadline = time.monotonic() + 600
        while TaskRow.objects.filter(pk__in=sent, status="SUCCESSFUL").count() < tenant_b:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        rows = TaskRow.objects.filter(pk__in=sent, status="SUCCESSFUL").values_list("pk", "return_value")
        waits = [(float(v) - sent[str(pk)]) * 1000 for pk, v in rows]
        # The part after enqueue returned (SQLite: enqueue may first wait for the
        # database's one write lock, which the workers hold in turns).
        after = [(float(v) - enqueued[str(pk)]) * 1000 for pk, v in rows]
        enqueue_ms = [(enqueued[i] - sent[i]) * 1000 for i in sent]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)
        connection.close()
    return {"system": "offload", "db": db, "metric": "noisy_neighbour", "fair": fair,
            "tenant_a": tenant_a, "tenant_b": tenant_b, "b_done": len(waits),
            "a_left_when_b_done_sending": a_left,
            "p50_ms": round(percentile(waits, 50), 2), "p99_ms": round(percentile(waits, 99), 2),
            "max_ms": round(max(waits), 2) if waits else None,
            "enqueue_p99_ms": round(percentile(enqueue_ms, 99), 2),
            "after_enqueue_p99_ms": round(percentile(after, 99), 2), "settings": "1 server, no flags"}


def report(rows, chart_path):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Tenant B's wait behind tenant A's 50,000-task burst (enqueue → start), ms")
    for col in ("database", "fair sharing", "p50", "p99", "max", "enqueue p99", "after enqueue p99",
                "B done", "A left after B's last"):
        table.add_column(col, justify="left" if col in ("database", "fair sharing") else "right")
    for r in rows:
        table.add_row(r["db"], "yes" if r["fair"] else "no", f"{r['p50_ms']:,.1f}",
                      f"{r['p99_ms']:,.1f}", f"{r['max_ms']:,.1f}", f"{r['enqueue_p99_ms']:,.1f}",
                      f"{r['after_enqueue_p99_ms']:,.1f}", f"{r['b_done']}/{r['tenant_b']}",
                      f"{r['a_left_when_b_done_sending']:,}")
    Console(width=150).print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [f"{r['db']}\n{'fair' if r['fair'] else 'FIFO'}" for r in rows]
    x = wait_bars(ax, rows)
    ax.axhline(50, color="#c53030", linestyle="--", linewidth=1, label="target p99 (fair)")
    ax.set_yscale("log")
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Tenant B's wait while tenant A's 50,000 tasks drain (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(chart_path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--fair", choices=["yes", "no", "both"], default="both")
    parser.add_argument("--tenant-a", type=int, default=50_000)
    parser.add_argument("--tenant-b", type=int, default=200)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--report", action="store_true",
                        help="run every combination, print the table and draw the chart")
    args = parser.parse_args()
    if args.report:
        from bench.run import run_json

        size = ["--tenant-a", str(args.tenant_a), "--tenant-b", str(args.tenant_b),
                "--every", str(args.every)]
        save_rows("fairness", run_json([sys.executable, __file__, "--db", args.db, "--fair",
                                        args.fair, *size], "offload"), report)
        return
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"], "fair": ["no", "yes"]}):
        print(json.dumps(measure(args.db, args.tenant_a, args.tenant_b, args.every,
                                 args.fair == "yes")), flush=True)


if __name__ == "__main__":
    main()
