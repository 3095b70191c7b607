"""Where a PostgreSQL pickup's time goes, statement by statement: one enqueue (insert,
``pg_notify``, commit; prepared, and unprepared through Django's cursor as under
``DEBUG``), a claim that finds nothing, a claim that takes one task, and
what a commit's fsync costs (a one-row update committed synchronously and not).
Prints one JSON object with each p50 in ms; the rest of a pickup (NOTIFY delivery,
handing the task to a thread) is bench/latency.py's total minus these.

    .venv/bin/python bench/pickup_parts.py --samples 400
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import setup_django  # noqa: E402


def p50_ms(call, samples):
    for _ in range(20):  # warm: prepared statements, caches
        call()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    setup_django("postgres")
    from django.db import connection
    from django.tasks import task_backends

    from bench.tasks import stamp
    from offload.clock import now

    store = task_backends["default"].store

    def claim():
        return store.claim(backend="default", queues=["default"], limit=4, worker="bench",
                           lease=30, now=now())

    result = {"system": "offload", "db": "postgres", "metric": "pickup_parts", "samples": args.samples,
              "enqueue_ms": p50_ms(stamp.enqueue, args.samples)}
    connection.force_debug_cursor = True  # as under DEBUG: through Django's cursor, unprepared
    result["enqueue_unprepared_ms"] = p50_ms(stamp.enqueue, args.samples)
    connection.force_debug_cursor = False
    claim()  # take what the enqueues left: the next claims find nothing
    while claim():
        pass
    result["claim_empty_ms"] = p50_ms(claim, args.samples)

    def enqueue_then_claim():
        stamp.enqueue()
        t0 = time.perf_counter()
        [_] = claim()
        return time.perf_counter() - t0

    for _ in range(20):
        enqueue_then_claim()
    result["claim_one_ms"] = round(statistics.median(
        enqueue_then_claim() * 1000 for _ in range(args.samples)), 3)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_commit (id int PRIMARY KEY, n int)")
        cursor.execute("INSERT INTO bench_commit VALUES (1, 0)")
        for mode in ("on", "off"):
            cursor.execute(f"SET synchronous_commit = {mode}")
            result[f"update_commit_sync_{mode}_ms"] = p50_ms(
                lambda cursor=cursor: cursor.execute("UPDATE bench_commit SET n = n + 1 WHERE id = 1"),
                args.samples)
        cursor.execute("DROP TABLE bench_commit")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
