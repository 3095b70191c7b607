"""What one claim costs with a large backlog: 1,000,000 READY tasks of mixed priority,
then 500 claims of 10 tasks each (each claim followed by recording the 10 as done),
with ageing off and on. Prints per-claim p50/p99 in ms and the plan PostgreSQL uses.
``--finished N`` first adds N finished (SUCCESSFUL) tasks, as a table that keeps a
week of results holds. ``--keys K`` gives the backlog K distinct concurrency keys (limit
1, round-robin); ``--full-key N`` puts N urgent tasks of one key whose holder runs in
front of the backlog, which every claim passes over (docs/flow-control.md). ``--fair-keys
F`` gives the backlog F fair keys (round-robin, with the turns enqueue gives).

    .venv/bin/python bench/claim_cost.py --db postgres --rows 1000000
    .venv/bin/python bench/claim_cost.py --db both --rows 1000000 --finished 1000000 --ageing off
    .venv/bin/python bench/claim_cost.py --db both --rows 1000000 --keys 100000 --ageing off
    .venv/bin/python bench/claim_cost.py --db both --rows 1000000 --fair-keys 100000 --ageing off
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, progress, run_each, setup_django  # noqa: E402


def measure(db, rows, claims, ageing, finished=0, keys=0, full_key=0, fair_keys=0):
    os.environ["BENCH_AGE_RATE"] = "1.0" if ageing else "0"
    os.environ["BENCH_AGE_CAP"] = "100"
    setup_django(db)
    from django.db import connection
    from django.tasks import task_backends

    from bench.tasks import noop
    from offload import bulk_enqueue
    from offload.clock import now
    from offload.store import Outcome

    backend = task_backends["default"]
    store, opts = backend.store, backend.opts
    step = 50_000
    from offload.models import TaskRow

    for start in range(0, finished, step):
        batch = min(step, finished - start)
        ids = [int(r.id) for r in bulk_enqueue(noop, [((), {})] * batch)]
        TaskRow.objects.filter(pk__in=ids).update(status="SUCCESSFUL", finished_at=now(),
                                                   return_value="null")
        progress(f"[{db}] {start + batch:,}/{finished:,} finished rows")
    for start in range(0, rows, step):
        batch = min(step, rows - start)
        for priority in (-50, 0, 50):  # three bands, a third each
            bulk_enqueue(noop.using(priority=priority), [((), {})] * (batch // 3))
        progress(f"[{db}] {start + batch:,}/{rows:,} rows")
    with connection.cursor() as cursor:
        if keys:
            cursor.execute("UPDATE offload_task SET concurrency_key = 'k' || (id %% %s), "
                           "concurrency_limit = 1 WHERE status = 'READY'", [keys])
            # As enqueue leaves them (key_full.sql): each key's best task in line, the
            # others set aside.
            cursor.execute("UPDATE offload_task SET key_waiting = (r.n > 1) FROM ("
                           " SELECT id, row_number() OVER (PARTITION BY concurrency_key"
                           " ORDER BY priority DESC, available_at, id) AS n FROM offload_task"
                           " WHERE status = 'READY') AS r WHERE offload_task.id = r.id")
            progress(f"[{db}] {keys:,} concurrency keys")
        if fair_keys:
            # As enqueue leaves them (fair_seq.sql): each key's tasks take turns 1, 2, ...
            cursor.execute("UPDATE offload_task SET fair_key = r.k, fair_seq = r.n FROM ("
                           " SELECT id, 'f' || (id %% %s) AS k, row_number() OVER ("
                           " PARTITION BY id %% %s ORDER BY id) AS n FROM offload_task"
                           " WHERE status = 'READY') AS r WHERE offload_task.id = r.id",
                           [fair_keys, fair_keys])
            progress(f"[{db}] {fair_keys:,} fair keys")
    if full_key:
        holder = noop.using(priority=100, concurrency_key="hot").enqueue()
        store.claim(backend="default", queues=["default"], limit=1, worker="holder", lease=3600,
                    now=now())
        assert TaskRow.objects.get(pk=holder.id).status == "RUNNING"
        bulk_enqueue(noop.using(priority=100, concurrency_key="hot"), [((), {})] * full_key)
    with connection.cursor() as cursor:
        # After the keys' UPDATE of every row, VACUUM as autovacuum would: else the
        # claims pay for a million dead row versions that enqueue never leaves.
        vacuum = "VACUUM ANALYZE" if keys or fair_keys else "ANALYZE"
        cursor.execute(f"{vacuum} offload_task" if db == "postgres" else "ANALYZE")
    times = []
    for _ in range(claims):
        t0 = time.perf_counter()
        claimed = store.claim(backend="default", queues=["default"], limit=10, worker="bench",
                              lease=30, now=now(), age_rate=opts.AGE_RATE, age_cap=opts.AGE_CAP)
        times.append((time.perf_counter() - t0) * 1000)
        store.complete([Outcome(c.id, c.token, "SUCCESSFUL", now(), return_value="null")
                        for c in claimed])
    plan = ""
    if db == "postgres":
        params = store._claim_params(backend="default", queues=["default"], limit=10, worker="bench",
                                     lease=30, now=now(), age_rate=opts.AGE_RATE, age_cap=opts.AGE_CAP)
        sql = "EXPLAIN (ANALYZE, COSTS OFF) WITH " + store.sql("picked") + " SELECT * FROM picked"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            plan = "\n".join(r[0] for r in cursor.fetchall())
    connection.close()
    return {"system": "offload", "db": db, "metric": "claim_cost", "ageing": ageing,
            "ready_rows": rows, "finished_rows": finished, "keys": keys, "full_key": full_key,
            "fair_keys": fair_keys,
            "claims": claims, "batch": 10,
            "p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3),
            "plan": plan}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--finished", type=int, default=0, help="finished rows added first")
    parser.add_argument("--ageing", choices=["on", "off", "both"], default="both")
    parser.add_argument("--keys", type=int, default=0, help="distinct concurrency keys")
    parser.add_argument("--full-key", type=int, default=0,
                        help="tasks of one full concurrency key in front of the backlog")
    parser.add_argument("--fair-keys", type=int, default=0, help="distinct fair keys")
    parser.add_argument("--show-plan", action="store_true")
    args = parser.parse_args()
    if run_each(__file__, args, {"db": ["sqlite", "postgres"], "ageing": ["off", "on"]}):
        return
    result = measure(args.db, args.rows, args.claims, args.ageing == "on", args.finished,
                     args.keys, args.full_key, args.fair_keys)
    plan = result.pop("plan")
    print(json.dumps(result), flush=True)
    if args.show_plan and plan:
        print(plan, file=sys.stderr)


if __name__ == "__main__":
    main()
