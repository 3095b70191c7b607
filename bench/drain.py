"""Drain benchmark: N no-op tasks enqueued in bulk, drained by ``offload worker --burst``.

Every task is verified SUCCESSFUL afterwards. Prints one JSON object per database::

    .venv/bin/python bench/drain.py --db both --tasks 10000
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import progress, run_each, setup_django, worker_cmd, worker_env  # noqa: E402


def measure(db, tasks, processes, threads):
    setup_django(db)
    from bench.tasks import noop
    from offload import bulk_enqueue
    from offload.models import TaskRow

    progress(f"[{db}] enqueueing {tasks} tasks in bulk")
    t0 = time.perf_counter()
    bulk_enqueue(noop, [((), {})] * tasks)
    enqueue_s = time.perf_counter() - t0
    progress(f"[{db}] draining with {processes} process(es) x {threads} threads")
    t0 = time.perf_counter()
    spawned = time.time()
    subprocess.run(worker_cmd("--burst", "--processes", str(processes), "--threads", str(threads)),
                   env=worker_env(db), check=True, timeout=600)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = TaskRow.objects.filter(status="SUCCESSFUL").count()
    first = TaskRow.objects.order_by("started_at").values_list("started_at", flat=True).first()
    last = TaskRow.objects.order_by("-finished_at").values_list("finished_at", flat=True).first()
    busy = (last - first).total_seconds()
    seconds = last.timestamp() - spawned
    # Same fields as the peer harnesses: "seconds" runs from worker spawn to the last
    # finish (start-up included); first_start_to_last_finish_s is the steady drain.
    return {"system": "offload", "db": db, "metric": "drain", "tasks": tasks, "verified": ok,
            "enqueue_per_s": round(tasks / enqueue_s), "seconds": round(seconds, 3),
            "tasks_per_s": round(tasks / seconds), "first_start_to_last_finish_s": round(busy, 3),
            "wall_with_exit_s": round(wall, 2),
            "processes": processes, "threads": threads,
            "worker_cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args()
    if run_each(__file__, args, {"db": ["sqlite", "postgres"]}):
        return
    result = measure(args.db, args.tasks, args.processes, args.threads)
    print(json.dumps(result), flush=True)
    if result["verified"] != args.tasks:
        sys.exit(f"only {result['verified']} of {args.tasks} tasks SUCCESSFUL")


if __name__ == "__main__":
    main()
