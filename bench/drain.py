"""Drain benchmark: N tasks enqueued in bulk, drained by ``offload worker --burst``.

Every task is verified SUCCESSFUL afterwards. Prints one JSON object per database.
``--task`` picks the work: ``noop`` (the default), or ``anap`` (an ``async def`` that
awaits 100 ms: I/O-bound work). ``--defaults`` passes no ``--processes``/``--threads``
flags: what a user gets from ``offload worker``. ``--delay-ms MS`` (PostgreSQL) puts
the database a network hop away: bench/netdelay.py adds MS each way to every
connection, the enqueuing one of this process and the worker's::

    .venv/bin/python bench/drain.py --db both --tasks 10000
    .venv/bin/python bench/drain.py --db postgres --defaults
    .venv/bin/python bench/drain.py --db postgres --defaults --delay-ms 0.5
    .venv/bin/python bench/drain.py --db postgres --defaults --task anap --tasks 2000
    .venv/bin/python bench/drain.py --db postgres --defaults --task anap --tasks 400 --async-concurrency 0
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import database_hop, hop_fields, progress, run_each, setup_django, worker_cmd, worker_env  # noqa: E402
from bench.peers.peerutil import PostgresCPU, cpu_fields  # noqa: E402


def measure(db, tasks, processes, threads, task="noop", flags=None, delay_ms=0):
    with database_hop(db, delay_ms) as proxy:
        result = _measure(db, tasks, processes, threads, task, flags)
    return {**result, **hop_fields(delay_ms, proxy)}


def _measure(db, tasks, processes, threads, task, flags):
    setup_django(db)
    import bench.tasks
    from offload import bulk_enqueue
    from offload.models import TaskRow

    progress(f"[{db}] enqueueing {tasks} {task} tasks in bulk")
    t0 = time.perf_counter()
    bulk_enqueue(getattr(bench.tasks, task), [((), {})] * tasks)
    enqueue_s = time.perf_counter() - t0
    if flags is None:
        flags = ["--processes", str(processes), "--threads", str(threads)]
    progress(f"[{db}] draining with {' '.join(flags) or 'no flags'}")
    # The database server's CPU as the peers' harnesses count it (bench/peers/peerutil.py).
    server = None
    if db == "postgres":
        from django.db import connection

        server = PostgresCPU(connection.settings_dict["NAME"])
        server.start()
    t0 = time.perf_counter()
    spawned = time.time()
    subprocess.run(worker_cmd("--burst", *flags), env=worker_env(db), check=True, timeout=600)
    wall = time.perf_counter() - t0
    db_cpu_s = server.stop() if server else None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = TaskRow.objects.filter(status="SUCCESSFUL").count()
    first = TaskRow.objects.order_by("started_at").values_list("started_at", flat=True).first()
    last = TaskRow.objects.order_by("-finished_at").values_list("finished_at", flat=True).first()
    busy = (last - first).total_seconds()
    seconds = last.timestamp() - spawned
    # Same fields as the peer harnesses: "seconds" runs from worker spawn to the last
    # finish (start-up included); first_start_to_last_finish_s is the steady drain.
    return {"system": "offload", "db": db, "metric": "drain", "task": task, "tasks": tasks,
            "verified": ok, "flags": " ".join(flags) or "none",
            "enqueue_per_s": round(tasks / enqueue_s), "seconds": round(seconds, 3),
            "tasks_per_s": round(tasks / seconds), "first_start_to_last_finish_s": round(busy, 3),
            "wall_with_exit_s": round(wall, 2),
            "processes": processes if "--processes" in flags else None,
            "threads": threads if "--threads" in flags else None,
            **cpu_fields(tasks, usage.ru_utime + usage.ru_stime, db_cpu_s, db_server=server is not None)}


def _flags(args):
    """The worker's flags: none with ``--defaults``, else processes and threads; and
    ``--async-concurrency`` if given."""
    flags = [] if args.defaults else ["--processes", str(args.processes), "--threads", str(args.threads)]
    if args.async_concurrency is not None:
        flags += ["--async-concurrency", str(args.async_concurrency)]
    return flags


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--task", choices=["noop", "anap"], default="noop")
    parser.add_argument("--defaults", action="store_true",
                        help="no --processes/--threads: the worker's defaults")
    parser.add_argument("--async-concurrency", type=int,
                        help="the worker's --async-concurrency (0: coroutine tasks on the threads)")
    parser.add_argument("--delay-ms", type=float, default=0,
                        help="PostgreSQL a hop away: this one-way delay (bench/netdelay.py); 0 = off")
    args = parser.parse_args()
    if args.delay_ms and args.db != "postgres":
        parser.error("--delay-ms needs --db postgres")
    if run_each(__file__, args, {"db": ["sqlite", "postgres"]}):
        return
    result = measure(args.db, args.tasks, args.processes, args.threads, args.task,
                     _flags(args), args.delay_ms)
    print(json.dumps(result), flush=True)
    if result["verified"] != args.tasks:
        sys.exit(f"only {result['verified']} of {args.tasks} tasks SUCCESSFUL")


if __name__ == "__main__":
    main()
