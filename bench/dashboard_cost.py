"""What the dashboard's page costs with a big table: 1,000,000 task rows (READY,
SUCCESSFUL and FAILED, several queues and priorities), then the page rendered 20 times
by Django's test client as a staff user. Prints p50/max in ms.

    .venv/bin/python bench/dashboard_cost.py --db postgres --rows 1000000
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, progress, setup_django  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()
    import os

    os.environ["BENCH_DASHBOARD"] = "1"
    setup_django(args.db)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from bench.tasks import noop
    from offload import bulk_enqueue
    from offload.models import TaskRow

    step = 50_000
    for start in range(0, args.rows, step):
        for i, priority in enumerate((-50, 0, 50)):
            bulk_enqueue(noop.using(priority=priority, queue_name=("default", "emails", "reports")[i]),
                         [((), {})] * (step // 3))
        progress(f"[{args.db}] {start + step:,}/{args.rows:,} rows")
    # Most of a real table is finished work: mark 90% SUCCESSFUL and 1% FAILED, recently.
    done_at = timezone.now()
    ids = list(TaskRow.objects.order_by("id").values_list("id", flat=True)[: int(args.rows * 0.91)])
    cut = int(args.rows * 0.90)
    for chunk in range(0, len(ids), 100_000):
        part = ids[chunk:chunk + 100_000]
        TaskRow.objects.filter(pk__in=[i for i in part if i <= ids[cut - 1]]).update(
            status="SUCCESSFUL", started_at=done_at, finished_at=done_at, return_value="null")
        TaskRow.objects.filter(pk__in=[i for i in part if i > ids[cut - 1]]).update(
            status="FAILED", started_at=done_at, finished_at=done_at)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE offload_task" if args.db == "postgres" else "ANALYZE")
    User.objects.create_superuser("bench", "b@example.com", "pw")
    client = Client()
    client.login(username="bench", password="pw")
    times = []
    for _ in range(args.renders):
        t0 = time.perf_counter()
        response = client.get("/offload/")
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    print(json.dumps({"system": "offload", "db": args.db, "metric": "dashboard_render",
                      "rows": args.rows, "renders": args.renders,
                      "p50_ms": round(percentile(times, 50), 1), "max_ms": round(max(times), 1)}))


if __name__ == "__main__":
    main()
