"""Peer priority benchmark: django-tasks-db, urgent tasks behind a big backlog.

The workload of the issue: two servers busy with a backlog of ``--low``
(100,000) low-priority 20 ms tasks, then ``--urgent`` (200) urgent tasks
enqueued one every ``--every`` (25 ms).  Urgent wait = ``time.time()`` at the
start of the urgent task's body minus ``time.time()`` just before its
``enqueue()`` (same machine clock).  Reports p50/p99/max, how many urgent
tasks ran within ``--timeout`` (120 s after the last enqueue; the rest are
counted as ``urgent_missing``), and how many low tasks were started during
the urgent window (first urgent enqueue to last urgent start).

Priority uses django.tasks' documented mechanism: ``task.using(priority=N)``,
-100..100, higher runs first.  Low = -100, urgent = 100.  django-tasks-db
claims ``ORDER BY priority DESC, run_after, enqueued_at`` over a partial
index on READY rows, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL.  Both kinds
of task sleep 20 ms (``peer_tasks.low_work`` / ``urgent_work``).

"Two servers" = two groups of ``--per-server`` (default 2) ``db_worker``
processes: db_worker runs one task at a time and has no concurrency option,
so a 2-core server runs one process per core (4 in all, all on this one
2-core machine; the tasks sleep, so CPU is not the limit).  Worker options as
in dtdb_bench.py: ``--no-reload --no-startup-delay --interval 0.05`` (the
interval only matters when idle: a busy worker claims its next task at once).

Phases: enqueue the backlog in transactions of 500 (progress on stderr),
ANALYZE the table (as autovacuum would), start the workers, wait until
``--warm`` low tasks have finished, send the urgent tasks on a fixed 25 ms
schedule, wait (deadline) until they have all run, stop the workers, and
drop the database / temporary SQLite file without draining the backlog.
One JSON line per database on stdout.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from dtdb_bench import Workers, common, log, prepare_database, recreate_pg, tail  # noqa: E402
from peerutil import HostCPU, emit, percentiles, run_per_db, wait_for_quiet  # noqa: E402

LOW, URGENT = -100, 100


def enqueue_backlog(n):
    from django.db import transaction
    from peer_tasks import low_work

    low = low_work.using(priority=LOW)
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        with transaction.atomic():
            for _ in range(min(500, n - start)):
                low.enqueue()
        if (start + 500) % 10000 == 0 or start + 500 >= n:
            done = min(n, start + 500)
            log(f"enqueued {done}/{n} low tasks ({done / (time.perf_counter() - t0):.0f}/s)")
    return time.perf_counter() - t0


def wait_until(cond, deadline_s, what, pool):
    limit = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > limit:
            raise RuntimeError(f"{what} not reached within {deadline_s}s")
        pool.check_alive()
        time.sleep(0.1)


def measure(db, args, workdir):
    from django.db import connection
    from django_tasks_db.models import DBTaskResult
    from peer_tasks import urgent_work

    enqueue_s = enqueue_backlog(args.low)
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {DBTaskResult._meta.db_table}")
    idle = wait_for_quiet(log)
    nproc = 2 * args.per_server
    log(f"starting 2 servers x {args.per_server} db_worker process(es)")
    pool = Workers(nproc, args.interval, batch=False, logdir=workdir)
    try:
        low_done = DBTaskResult.objects.filter(priority=LOW).successful()
        wait_until(lambda: low_done.count() >= args.warm, 60, f"{args.warm} low tasks done", pool)
        log(f"workers busy ({low_done.count()} low tasks done); sending {args.urgent} urgent tasks")

        host = HostCPU().start()
        urgent = urgent_work.using(priority=URGENT)
        sent = {}  # result id -> time.time() just before enqueue
        window_start = time.time()
        t_next = time.monotonic()
        for _ in range(args.urgent):
            time.sleep(max(0.0, t_next - time.monotonic()))
            t_next += args.every
            t0 = time.time()
            sent[urgent.enqueue().id] = t0
        log(f"urgent tasks sent in {time.time() - window_start:.2f}s; waiting for them")

        started = {}
        limit = time.monotonic() + args.timeout
        while len(started) < len(sent) and time.monotonic() < limit:
            time.sleep(0.2)
            rows = DBTaskResult.objects.filter(priority=URGENT).successful()
            started.update((str(i), v) for i, v in rows.values_list("id", "return_value"))
            pool.check_alive()
        host_busy = host.busy_pct()
    finally:
        pool.stop()

    window_end = max(started.values(), default=time.time())
    waits = [(started[i] - t0) * 1000.0 for i, t0 in sent.items() if i in started]
    low_started = DBTaskResult.objects.filter(
        priority=LOW, started_at__gte=datetime.fromtimestamp(window_start, UTC),
        started_at__lte=datetime.fromtimestamp(window_end, UTC)).count()
    stats = percentiles(waits, ps=(50, 99))
    emit({**common(db, args, nproc), "metric": "urgent_wait", "low_tasks": args.low,
          "urgent": args.urgent, "every_s": args.every, "servers": 2,
          "per_server": args.per_server, **stats, "urgent_done": len(waits),
          "urgent_missing": len(sent) - len(waits),
          "low_started_during": low_started,
          "window_s": round(window_end - window_start, 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(args.low / enqueue_s, 1),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy,
          "settings": f"2 servers x {args.per_server} db_worker, --interval {args.interval}, "
                      f"priority low={LOW} urgent={URGENT}, tasks sleep 20 ms"})


def run_one(db, args):
    workdir = tempfile.mkdtemp(prefix="bench_peer_dtdb_prio_")
    try:
        prepare_database(db, workdir)
        measure(db, args, workdir)
    except Exception:
        log(f"FAILED; worker log tail:\n{tail(os.path.join(workdir, 'worker.log'))}")
        raise
    finally:
        if db == "postgres":
            from django.db import connections

            connections.close_all()
            recreate_pg(drop_only=True)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--low", type=int, default=100000, help="backlog size (default: 100000)")
    ap.add_argument("--urgent", type=int, default=200, help="urgent tasks (default: 200)")
    ap.add_argument("--every", type=float, default=0.025,
                    help="seconds between urgent enqueues (default: 0.025)")
    ap.add_argument("--per-server", type=int, default=2,
                    help="db_worker processes per server, 2 servers (default: 2)")
    ap.add_argument("--interval", type=float, default=0.05,
                    help="db_worker --interval in seconds (default: 0.05)")
    ap.add_argument("--warm", type=int, default=200,
                    help="low tasks that must have finished before the urgent phase")
    ap.add_argument("--timeout", type=float, default=120,
                    help="deadline for the urgent tasks after the last enqueue (default: 120)")
    args = ap.parse_args()
    args.analyze = True  # echoed by common(); the backlog is always ANALYZEd
    if args.db == "both":
        argv = sys.argv[1:]
        if "--db" in argv:
            i = argv.index("--db")
            del argv[i:i + 2]
        argv = [a for a in argv if not a.startswith("--db=")]
        return run_per_db(__file__, argv, args.low / 500 + args.timeout + 600, log)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_one(args.db, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
