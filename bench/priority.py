"""Urgent work behind a busy backlog: 2 servers working through 100,000 low-priority
tasks of ~20 ms, then 200 urgent tasks enqueued one every 25 ms. Reports the urgent
wait (enqueue → start) with and without a reserved slot, and writes a chart.

    .venv/bin/python bench/priority.py --db both          # Offload only
    make bench-priority                                    # with the peers

Capacity is matched to the peers' (4 task slots in all): each server is
``offload worker --processes 1 --threads 2``. "reserved" runs ``--threads 3
--reserve 1:50``: the same two general slots per server plus one that only takes
priority >= 50 — the feature's price is that idle slot. ``--defaults`` runs one server
as a user gets it, ``offload worker`` with no flags (a process per core × 4 threads,
the claim window on).

    .venv/bin/python bench/priority.py --db both --defaults
"""

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, progress, run_each, setup_django, start_worker, wait_bars  # noqa: E402


def measure(db, low, urgent, every, reserve, defaults=False):
    setup_django(db)
    from django.db import connection

    from bench.tasks import sleep20, stamp_sleep20
    from offload import bulk_enqueue
    from offload.models import TaskRow

    progress(f"[{db}] enqueueing {low:,} low-priority tasks")
    bulk_enqueue(sleep20.using(priority=-50), [((), {})] * low)
    if db == "postgres":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE offload_task")
    flags = ["--processes", "1"] + (["--threads", "3", "--reserve", "1:50"] if reserve
                                    else ["--threads", "2"])
    servers = [start_worker(db)] if defaults else [start_worker(db, *flags) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while TaskRow.objects.filter(status="SUCCESSFUL").count() < 200:
            if time.monotonic() > deadline:
                sys.exit("servers did not get busy")
            time.sleep(0.1)
        progress(f"[{db}] servers busy; sending {urgent} urgent tasks, one every {every * 1000:.0f} ms")
        sent = {}
        start = time.monotonic()
        for i in range(urgent):
            time.sleep(max(0.0, start + i * every - time.monotonic()))
            t0 = time.time()
            sent[stamp_sleep20.using(priority=90).enqueue().id] = t0
        deadline = time.monotonic() + 120
        while TaskRow.objects.filter(pk__in=sent, status="SUCCESSFUL").count() < urgent:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        rows = TaskRow.objects.filter(pk__in=sent, status="SUCCESSFUL").values_list("pk", "return_value")
        waits = [(float(v) - sent[str(pk)]) * 1000 for pk, v in rows]
        low_done = TaskRow.objects.filter(status="SUCCESSFUL", priority=-50).count()
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(60)
        connection.close()
    return {"system": "offload", "db": db, "metric": "urgent_wait", "reserved": reserve,
            "low_tasks": low, "urgent": urgent, "urgent_done": len(waits),
            "p50_ms": round(percentile(waits, 50), 2), "p99_ms": round(percentile(waits, 99), 2),
            "max_ms": round(max(waits), 2) if waits else None, "low_done_during": low_done,
            "settings": "1 server, no flags" if defaults else
                        "2 servers x " + ("3 threads, --reserve 1:50" if reserve else "2 threads")}


def report(rows, chart_path):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Urgent wait behind a busy backlog (enqueue → start), ms")
    for col in ("system", "database", "reserved slot", "p50", "p99", "max", "urgent done", "settings"):
        table.add_column(col, justify="right" if col in ("p50", "p99", "max", "urgent done") else "left")
    for r in rows:
        table.add_row(r["system"], r["db"], "yes" if r.get("reserved") else "no",
                      f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}",
                      f"{r['urgent_done']}/{r['urgent']}", str(r.get("settings", "")))
    Console(width=150).print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['system']}\n{r['db']}" + ("\nreserved" if r.get("reserved") else "") for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    x = wait_bars(ax, rows)
    ax.axhline(50, color="#c53030", linestyle="--", linewidth=1, label="target p99 (reserved)")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("Urgent wait with 100,000 low-priority 20 ms tasks queued (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(chart_path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--low", type=int, default=100_000)
    parser.add_argument("--urgent", type=int, default=200)
    parser.add_argument("--every", type=float, default=0.025)
    parser.add_argument("--reserve", choices=["yes", "no", "both"], default="both")
    parser.add_argument("--peers", action="store_true", help="also run the peers and report all")
    parser.add_argument("--defaults", action="store_true",
                        help="one server with no flags instead of the matched capacity")
    args = parser.parse_args()
    if args.peers:
        from bench.run import RESULTS, ROOT, run_json

        size = ["--low", str(args.low), "--urgent", str(args.urgent), "--every", str(args.every)]
        rows = run_json([sys.executable, __file__, "--db", args.db, *size], "offload")
        rows += run_json(["bash", ROOT / "bench/peers/run-priority.sh", *size], "peers")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "priority.json").write_text(json.dumps(rows, indent=1))
        report(rows, RESULTS / "priority.png")
        return
    if args.defaults:
        args.reserve = "no"
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"], "reserve": ["no", "yes"]}):
        print(json.dumps(measure(args.db, args.low, args.urgent, args.every, args.reserve == "yes",
                                 args.defaults)), flush=True)


if __name__ == "__main__":
    main()
