"""What the dashboard's pages cost with a big table: 1,000,000 task rows (READY,
SUCCESSFUL and FAILED, several queues and priorities), then each page rendered 20 times
by Django's test client as a staff user: the dashboard, the task browser (newest, a
state, the one failure of a rare task among them all, the longest runs), a task's page,
a bulk action's confirmation (its count of 10,000 failures) and the per-task table and
charts. Prints a table of p50/p95 per page, and the dashboard's queries' p50 (stderr).

The finished rows are spread over the last hour with varied waits and run times, and
counted in offload_series by the store's own statement (record_rows) under four worker
ids, 1,000 tasks at a time, as workers would have recorded them.

    .venv/bin/python bench/dashboard_cost.py --db postgres --rows 1000000
    .venv/bin/python bench/dashboard_cost.py --db sqlite --rows 1000000
"""

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, progress, setup_django  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--no-vacuum", action="store_true", help="measure right after the fill")
    args = parser.parse_args()
    import os

    os.environ["BENCH_DASHBOARD"] = "1"
    setup_django(args.db)
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.tasks import task_backends
    from django.test import Client
    from django.utils import timezone

    from bench.tasks import noop, stamp
    from offload import bulk_enqueue
    from offload.dashboard import queries
    from offload.models import TaskRow

    step = 50_000
    for start in range(0, args.rows, step):
        for i, priority in enumerate((-50, 0, 50)):
            bulk_enqueue(noop.using(priority=priority, queue_name=("default", "emails", "reports")[i]),
                         [((), {})] * (step // 3))
        progress(f"[{args.db}] {start + step:,}/{args.rows:,} rows")
    # Most of a real table is finished work: 90% SUCCESSFUL and 1% FAILED, finished over
    # the last hour, and counted in offload_series as the workers would have.
    store = task_backends["default"].store
    done_at = timezone.now()
    ids = list(TaskRow.objects.order_by("id").values_list("id", flat=True)[: int(args.rows * 0.91)])
    cut, chunk = int(args.rows * 0.90), 1000
    for n, start in enumerate(range(0, len(ids), chunk)):
        part = ids[start:start + chunk]
        at = done_at - timedelta(seconds=3540 * (1 - start / len(ids)))
        run, wait = timedelta(milliseconds=5 * (n % 9)), timedelta(milliseconds=2 * (n % 13))
        status = "SUCCESSFUL" if start < cut else "FAILED"
        with transaction.atomic():
            TaskRow.objects.filter(pk__in=part).update(
                status=status, available_at=at - run - wait, started_at=at - run,
                last_attempted_at=at - run, finished_at=at, attempts=1,
                return_value="null" if status == "SUCCESSFUL" else None)
            store.record_rows(part, worker=f"bench-{n % 4}", timed=True)
        if n % 100 == 0:
            progress(f"[{args.db}] finished and counted {start + len(part):,}/{len(ids):,}")
    # The needle: one failure of a task path that nothing else has, in the middle.
    [needle] = bulk_enqueue(stamp, [((), {})])
    TaskRow.objects.filter(pk=needle.id).update(status="FAILED", finished_at=done_at, attempts=1,
                                                 started_at=done_at, last_attempted_at=done_at)
    store.record_rows([int(needle.id)], worker="bench-0", timed=True)
    # A table this busy is vacuumed by autovacuum every few seconds to minutes; the fill
    # above made 910,000 dead row versions at once, so vacuum once as it would have.
    # --no-vacuum measures the state just after the fill instead.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if args.no_vacuum or connection.vendor == "sqlite" else "VACUUM ANALYZE")
    User.objects.create_superuser("bench", "b@example.com", "pw")
    client = Client()
    client.login(username="bench", password="pw")
    failed = TaskRow.objects.filter(status="FAILED").order_by("id").values_list("id", flat=True).first()
    pages = {
        "dashboard": "/offload/",
        "tasks: newest": "/offload/tasks/",
        "tasks: failed": "/offload/tasks/?state=failed",
        "tasks: one failure of a rare task": "/offload/tasks/?state=failed&task=bench.tasks.stamp",
        "tasks: longest runs": "/offload/tasks/?sort=run",
        "tasks: an older page": f"/offload/tasks/?after={args.rows // 2}",
        "a task's page": f"/offload/task/{failed}/",
        "bulk retry: the count": "/offload/tasks/bulk/?state=failed&action=retry",
        "by task, 1 h": "/offload/stats/",
        "by task, 7 d": "/offload/stats/?window=7d",
        "a task's charts, 24 h": "/offload/stats/?window=24h&task=bench.tasks.noop",
    }
    measured = {}
    for name, url in pages.items():
        spent = []
        for _ in range(args.renders):
            t0 = time.perf_counter()
            response = client.get(url)
            spent.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        measured[name] = spent
    assert b"bench.tasks.stamp" in client.get(pages["tasks: one failure of a rare task"]).content
    times = measured["dashboard"]
    progress(f"{'query':<16} {'p50 ms':>8}")
    for name in ("summary", "throughput", "waits_by_band", "waiting", "failures"):
        spent = []
        for _ in range(args.renders):
            t0 = time.perf_counter()
            list(getattr(queries, name)("default"))
            spent.append((time.perf_counter() - t0) * 1000)
        progress(f"{name:<16} {percentile(spent, 50):>8.1f}")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Dashboard pages with {args.rows:,} task rows ({args.db}), "
                        f"{args.renders} renders each")
    for col in ("page", "p50", "p95", "max"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for name, spent in measured.items():
        table.add_row(name, *(f"{v:.1f} ms" for v in (percentile(spent, 50), percentile(spent, 95),
                                                       max(spent))))
    Console(width=120, stderr=True).print(table)
    print(json.dumps({"system": "offload", "db": args.db, "metric": "dashboard_render",
                      "rows": args.rows, "renders": args.renders, "vacuumed": not args.no_vacuum,
                      "p50_ms": round(percentile(times, 50), 1), "max_ms": round(max(times), 1),
                      "pages": {name: {"p50_ms": round(percentile(spent, 50), 1),
                                       "p95_ms": round(percentile(spent, 95), 1)}
                                for name, spent in measured.items()}}))


if __name__ == "__main__":
    main()
