"""Pickup latency: enqueue-to-start on an idle async server.

One task at a time, spaced apart so the server is idle each time; the latency is the
time the task body starts (``time.time()`` inside the task) minus the time just before
``enqueue()`` was called, on the same machine clock. Prints one JSON object per database.
``--delay-ms MS`` (PostgreSQL) puts the database a network hop away: bench/netdelay.py
adds MS each way to every connection, this process's and the worker's::

    .venv/bin/python bench/latency.py --db both --samples 200
    .venv/bin/python bench/latency.py --db postgres --samples 100 --delay-ms 0.5
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (  # noqa: E402
    database_hop,
    hop_fields,
    percentile,
    progress,
    run_each,
    setup_django,
    start_worker,
)


def measure(db, samples, gap, delay_ms=0):
    with database_hop(db, delay_ms) as proxy:
        result = _measure(db, samples, gap)
    return {**result, **hop_fields(delay_ms, proxy)}


def _measure(db, samples, gap):
    setup_django(db)
    from django.db import connection

    from bench.tasks import stamp
    from offload.models import TaskRow

    worker = start_worker(db, "--processes", "1", "--threads", "4")
    try:
        # Wait until the server takes work: a first task must finish.
        warm = stamp.enqueue()
        deadline = time.monotonic() + 60
        while not TaskRow.objects.filter(pk=warm.id, status="SUCCESSFUL").exists():
            if time.monotonic() > deadline or worker.poll() is not None:
                sys.exit("the worker did not start")
            time.sleep(0.05)
        sent = {}
        for i in range(samples):
            time.sleep(gap)  # idle server: the previous task is long done
            t0 = time.time()
            result = stamp.enqueue()
            sent[result.id] = t0
            if i % 50 == 0:
                progress(f"[{db}] {i}/{samples} samples")
        deadline = time.monotonic() + 30
        while TaskRow.objects.filter(pk__in=sent, status="SUCCESSFUL").count() < samples:
            if time.monotonic() > deadline:
                sys.exit("not every probe finished")
            time.sleep(0.05)
        rows = TaskRow.objects.filter(pk__in=sent).values_list("pk", "return_value")
        latencies = [(float(value) - sent[str(pk)]) * 1000 for pk, value in rows]
    finally:
        worker.terminate()
        worker.wait(30)
        connection.close()
    return {"system": "offload", "db": db, "metric": "pickup", "samples": len(latencies),
            "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
            "max_ms": round(max(latencies), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.03, help="seconds between probes")
    parser.add_argument("--delay-ms", type=float, default=0,
                        help="PostgreSQL a hop away: this one-way delay (bench/netdelay.py); 0 = off")
    args = parser.parse_args()
    if args.delay_ms and args.db != "postgres":
        parser.error("--delay-ms needs --db postgres")
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"]}):
        print(json.dumps(measure(args.db, args.samples, args.gap, args.delay_ms)), flush=True)


if __name__ == "__main__":
    main()
