"""The ageing bound: under sustained urgent load, how long does low-priority work wait?

One server (1 process x 4 threads) is kept saturated with urgent (priority 50) tasks of
~20 ms: the script tops the urgent backlog up to 40 ready tasks every 50 ms. 40 low
(priority -50) tasks are enqueued at the start. With AGE_RATE = 10 points/s a low task
overtakes fresh urgent work after (50 - (-50)) / 10 = 10 s, so every low task should
start within about 10 s plus the urgent tasks' own short wait. Without ageing they
never start while the urgent load lasts. Prints one JSON line per setting.

    .venv/bin/python bench/ageing.py --db postgres --seconds 20
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, progress, run_each, setup_django, start_worker  # noqa: E402

URGENT, LOW, RATE, CAP = 50, -50, 10.0, 200


def measure(db, seconds, ageing):
    os.environ["BENCH_AGE_RATE"] = str(RATE if ageing else 0)
    os.environ["BENCH_AGE_CAP"] = str(CAP)
    setup_django(db)
    from django.db import connection

    from bench.tasks import sleep20, stamp_sleep20
    from offload import bulk_enqueue
    from offload.models import TaskRow

    server = start_worker(db, "--processes", "1", "--threads", "4")
    try:
        bulk_enqueue(stamp_sleep20.using(priority=URGENT), [((), {})] * 40)
        lows = [r.id for r in bulk_enqueue(sleep20.using(priority=LOW), [((), {})] * 40)]
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            ready = TaskRow.objects.filter(status="READY", priority=URGENT).count()
            if ready < 40:
                bulk_enqueue(stamp_sleep20.using(priority=URGENT), [((), {})] * (40 - ready))
            time.sleep(0.05)
            if int(time.monotonic() - start) % 5 == 0:
                done = TaskRow.objects.filter(pk__in=lows).exclude(started_at=None).count()
                progress(f"[{db} ageing={'on' if ageing else 'off'}] "
                         f"{time.monotonic() - start:4.1f}s: {done}/40 low tasks started")
        started = [(r.started_at - r.enqueued_at).total_seconds() for r in
                   TaskRow.objects.filter(pk__in=lows).exclude(started_at=None)]
        urgent = [(r.started_at - r.enqueued_at).total_seconds() * 1000 for r in
                  TaskRow.objects.filter(priority=URGENT).exclude(started_at=None)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        connection.close()
    return {"system": "offload", "db": db, "metric": "ageing", "ageing": ageing,
            "age_rate": RATE if ageing else 0, "age_cap": CAP,
            "bound_s": (URGENT - LOW) / RATE if ageing else None, "seconds": seconds,
            "low_tasks": 40, "low_started": len(started),
            "low_wait_min_s": round(min(started), 2) if started else None,
            "low_wait_max_s": round(max(started), 2) if started else None,
            "urgent_tasks_run": len(urgent),
            "urgent_wait_p50_ms": round(percentile(urgent, 50), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--ageing", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"], "ageing": ["on", "off"]}):
        print(json.dumps(measure(args.db, args.seconds, args.ageing == "on")), flush=True)


if __name__ == "__main__":
    main()
