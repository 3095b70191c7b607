"""Peer benchmark: django-tasks-db (Django 6.1 ``django.tasks`` DB backend).

Measures, on SQLite (WAL file) and/or PostgreSQL:

* drain  - N no-op tasks enqueued up front (``task.enqueue()`` in 500-task
  transactions; django.tasks has no bulk-enqueue API), then ``db_worker``
  processes are started and run until the queue is empty.  Drain time runs
  from worker spawn to the last ``finished_at``; every row must be SUCCESSFUL.
  The table is ANALYZEd after the enqueue (``--no-analyze`` to skip): on a
  fresh table without planner statistics PostgreSQL sorts the whole backlog
  on every claim (~6.5 ms per claim at 10k READY rows instead of ~0.05 ms,
  which halves the drain rate); autovacuum would analyze a table that size
  within a minute in production, so the analyzed figure is the honest one.
* pickup - idle workers; one probe task at a time, latency = time.time() in
  the task body minus time.time() taken just before ``enqueue()``.  The
  polling worker's latency depends on its ``--interval`` (see below).

CPU per drain task (``cpu_us_per_task``): CPU of the db_worker processes (getrusage
of the exited children, start-up included; on SQLite that includes the database
work) plus, on PostgreSQL, that of the backends serving ``bench_peer_dtdb`` (sampled
from /proc, peerutil.PostgresCPU), over the drain.

Worker settings (db_worker has no prefetch/concurrency knobs; these are all
of its speed-relevant options):

* ``--no-startup-delay``: skip the random <=1 s anti-thundering-herd sleep.
* ``--no-reload``: autoreload forks a watcher process; never used in production.
* ``--interval`` (default here 0.05 s, package default 1 s): the sleep after an
  empty poll.  It only matters when idle, so it sets pickup latency (about
  interval/2 + one poll).  0 would be a busy loop burning a core on 2 cores;
  50 ms is an aggressive but sane production value.  Use ``--interval`` to
  try others; the value is echoed in the JSON.
* ``--workers`` (default 2 = cores on postgres, 1 on sqlite): scaling out is
  done with more processes (rows are claimed with SELECT ... FOR UPDATE SKIP
  LOCKED on postgres; on SQLite every claim takes an EXCLUSIVE lock, so extra
  workers only contend).  ``--batch`` is used for the drain so workers exit
  when the queue is empty.

Prints one JSON object per measurement on stdout; progress goes to stderr.
Only worker processes started here are ever signalled (by PID), and every
wait has a deadline.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from peerutil import (  # noqa: E402
    HostCPU,
    PostgresCPU,
    children_cpu_seconds,
    cpu_fields,
    cpu_seconds,
    die_with_parent,
    emit,
    percentiles,
    run_per_db,
    wait_for_quiet,
)

PG_NAME = "bench_peer_dtdb"
DEFAULT_WORKERS = {"postgres": 2, "sqlite": 1}


def log(msg):
    print(f"[dtdb {os.environ.get('PEER_DB', '-')}] {msg}", file=sys.stderr, flush=True)


class Workers:
    """db_worker subprocesses owned by this benchmark (tracked by PID)."""

    def __init__(self, n, interval, batch, logdir):
        self.procs = []
        self.logfile = open(os.path.join(logdir, "worker.log"), "ab")
        for i in range(n):
            cmd = [sys.executable, "-m", "django", "db_worker", "--no-reload",
                   "--no-startup-delay", "--interval", str(interval),
                   "--worker-id", f"bench-{os.getpid()}-{i}"]
            if batch:
                cmd.append("--batch")
            self.procs.append(subprocess.Popen(
                cmd, env=os.environ.copy(), stdout=self.logfile,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent))

    def cpu_seconds(self):
        return cpu_seconds([p.pid for p in self.procs])

    def wait(self, deadline):
        for p in self.procs:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))

    def check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker pid {p.pid} exited early with {p.returncode}")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.logfile.close()


def prepare_database(db, workdir):
    os.environ["PEER_DB"] = db
    os.environ["DJANGO_SETTINGS_MODULE"] = "peer_settings"
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ["PEER_SQLITE_PATH"] = os.path.join(workdir, "peer.sqlite3")
    os.environ["PEER_PG_NAME"] = PG_NAME
    sys.path.insert(0, HERE)
    if db == "postgres":
        recreate_pg(drop_only=False)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def recreate_pg(drop_only):
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {PG_NAME}")


def common(db, args, workers):
    return {"system": "django-tasks-db", "version": version("django-tasks-db"),
            "django": version("django"), "db": db, "workers": workers,
            "interval_s": args.interval, "analyzed": args.analyze}


def drain(db, args, workers, workdir):
    from django.db import connection, transaction
    from django.db.models import Max, Min
    from django_tasks_db.models import DBTaskResult
    from peer_tasks import noop

    n = args.tasks
    log(f"enqueueing {n} no-op tasks")
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        with transaction.atomic():
            for _ in range(min(500, n - start)):
                noop.enqueue()
    enqueue_s = time.perf_counter() - t0
    log(f"enqueued in {enqueue_s:.2f}s")
    if args.analyze:
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {DBTaskResult._meta.db_table}")
    idle = wait_for_quiet(log)
    log(f"starting {workers} worker(s) (--batch)")
    host = HostCPU().start()
    db_cpu = PostgresCPU(PG_NAME).start() if db == "postgres" else None
    cpu0 = children_cpu_seconds()
    wall_start = time.time()
    pool = Workers(workers, args.interval, batch=True, logdir=workdir)
    try:
        pool.wait(time.monotonic() + args.timeout)
    except subprocess.TimeoutExpired:
        log(f"drain did not finish within {args.timeout}s")
    finally:
        pool.stop()
    worker_cpu = children_cpu_seconds() - cpu0
    db_cpu_s = db_cpu.stop() if db_cpu else None
    host_busy = host.busy_pct()

    agg = DBTaskResult.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    ok = DBTaskResult.objects.successful().count()
    if ok != n or agg["last"] is None:
        raise RuntimeError(f"only {ok}/{n} tasks SUCCESSFUL; see {workdir}/worker.log")
    seconds = agg["last"].timestamp() - wall_start
    busy = (agg["last"] - agg["first"]).total_seconds()
    emit({**common(db, args, workers), "metric": "drain", "task": "noop", "tasks": n,
          "seconds": round(seconds, 3), "tasks_per_s": round(n / seconds, 1),
          "first_start_to_last_finish_s": round(busy, 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(n / enqueue_s, 1),
          "verified": ok, **cpu_fields(n, worker_cpu, db_cpu_s, db_server=db == "postgres"),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})
    DBTaskResult.objects.all().delete()


def pickup(db, args, workers, workdir):
    from peer_tasks import probe

    def one(deadline_s=10.0):
        t0 = time.time()
        result = probe.enqueue()
        limit = time.monotonic() + deadline_s
        while not result.is_finished:
            if time.monotonic() > limit:
                pool.check_alive()
                raise RuntimeError(f"probe {result.id} not finished within {deadline_s}s")
            time.sleep(0.002)
            result.refresh()
        if result.status != "SUCCESSFUL":
            raise RuntimeError(f"probe {result.id} ended {result.status}")
        return (result.return_value - t0) * 1000.0

    idle = wait_for_quiet(log)
    log(f"starting {workers} idle worker(s), interval {args.interval}s")
    pool = Workers(workers, args.interval, batch=False, logdir=workdir)
    try:
        one(deadline_s=30.0)  # first probe doubles as "workers are up"
        for _ in range(5):
            one()
        cpu0, wall0, host = pool.cpu_seconds(), time.monotonic(), HostCPU().start()
        lat = []
        for i in range(args.samples):
            # 20-50 ms apart, plus a random offset spanning one poll interval:
            # otherwise the gap phase-locks to the worker's sleep and flatters it.
            time.sleep(random.uniform(0.02, 0.05) + random.uniform(0, args.interval))
            lat.append(one())
            if (i + 1) % 50 == 0:
                log(f"pickup {i + 1}/{args.samples}")
        cpu_pct = 100.0 * (pool.cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        host_busy = host.busy_pct()
    finally:
        pool.stop()
    emit({**common(db, args, workers), "metric": "pickup", **percentiles(lat),
          "worker_cpu_pct": round(cpu_pct, 1),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})


def run_one(db, args):
    workers = args.workers or DEFAULT_WORKERS[db]
    workdir = tempfile.mkdtemp(prefix="bench_peer_dtdb_")
    try:
        prepare_database(db, workdir)
        drain(db, args, workers, workdir)
        pickup(db, args, workers, workdir)
    except Exception:
        log(f"FAILED; worker log tail:\n{tail(os.path.join(workdir, 'worker.log'))}")
        raise
    finally:
        if db == "postgres":
            from django.db import connections

            connections.close_all()
            recreate_pg(drop_only=True)
        shutil.rmtree(workdir, ignore_errors=True)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--workers", type=int, default=0,
                    help="db_worker processes (default: 2 on postgres, 1 on sqlite)")
    ap.add_argument("--interval", type=float, default=0.05,
                    help="db_worker --interval in seconds (default: 0.05)")
    ap.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                    help="ANALYZE the task table after the bulk enqueue (default: on)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="deadline in seconds for the drain phase (default: 300)")
    args = ap.parse_args()
    if args.db == "both":
        argv = [a for a in sys.argv[1:]]
        i = argv.index("--db") if "--db" in argv else -1
        if i >= 0:
            del argv[i:i + 2]
        argv = [a for a in argv if not a.startswith("--db=")]
        return run_per_db(__file__, argv, 2 * args.timeout + 180, log)
    # SIGTERM -> SystemExit so the finally blocks stop our workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_one(args.db, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
