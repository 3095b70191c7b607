"""What a workflow costs: N no-op tasks drained by ``offload worker --burst`` (no other
flags) as N independent tasks, and as a group of N with a chord callback that
receives the N results (``chord``: the bookkeeping of each member's completion in its
transaction, the callback released once by the last). Rounds alternate, so both see
the same machine. Every run is verified: every step SUCCESSFUL, the callback got N
results. The target (issue 16): the group drains within 1.5x the independent tasks.

    .venv/bin/python bench/workflow.py --db both --report
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import progress, run_each, save_rows, setup_django, worker_cmd, worker_env  # noqa: E402


def drain(db, tasks, grouped):
    """``(enqueue seconds, drain seconds)``: drain is the first start to the last finish."""
    from bench.tasks import collect, noop
    from offload import bulk_enqueue, chord, step
    from offload.models import Edge, TaskRow, Workflow

    for model in (TaskRow, Edge, Workflow):
        model.objects.all().delete()
    t0 = time.perf_counter()
    if grouped:
        flow = chord([step(noop)] * tasks, step(collect)).enqueue()
    else:
        bulk_enqueue(noop, [((), {})] * tasks)
    enqueued = time.perf_counter() - t0
    subprocess.run(worker_cmd("--burst"), env=worker_env(db), check=True, timeout=1800)
    expected = tasks + grouped
    ok = TaskRow.objects.filter(status="SUCCESSFUL").count()
    if ok != expected or (grouped and flow.refresh().return_value != tasks):
        sys.exit(f"[{db}] grouped={grouped}: {ok} of {expected} SUCCESSFUL")
    first = TaskRow.objects.order_by("started_at").values_list("started_at", flat=True).first()
    last = TaskRow.objects.order_by("-finished_at").values_list("finished_at", flat=True).first()
    return enqueued, (last - first).total_seconds()


def measure(db, tasks, rounds):
    setup_django(db)
    runs = {False: [], True: []}
    for n in range(rounds):
        for grouped in (False, True):
            runs[grouped].append(drain(db, tasks, grouped))
            enq, took = runs[grouped][-1]
            progress(f"[{db}] round {n + 1}/{rounds}, {'group + callback' if grouped else 'independent'}: "
                     f"enqueue {enq:.2f} s, drain {took:.2f} s")
    med = {g: (statistics.median(r[0] for r in runs[g]), statistics.median(r[1] for r in runs[g]))
           for g in runs}
    return {"system": "offload", "db": db, "metric": "workflow_overhead", "tasks": tasks,
            "rounds": rounds, "flags": "--burst (no others)",
            "independent_enqueue_s": round(med[False][0], 3), "group_enqueue_s": round(med[True][0], 3),
            "independent_drain_s": round(med[False][1], 2), "group_drain_s": round(med[True][1], 2),
            "independent_range": [round(min(r[1] for r in runs[False]), 2), round(max(r[1] for r in runs[False]), 2)],
            "group_range": [round(min(r[1] for r in runs[True]), 2), round(max(r[1] for r in runs[True]), 2)],
            "ratio": round(med[True][1] / med[False][1], 2)}


def report(rows, chart_path):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="N no-op tasks: independent vs a group of N with a chord callback "
                        "(median of the rounds; target: ratio <= 1.5)")
    for col in ("database", "tasks", "enqueue: independent", "enqueue: group", "drain: independent",
                "drain: group + callback", "ratio"):
        table.add_column(col, justify="left" if col == "database" else "right")
    for r in rows:
        lo, hi = r["independent_range"]
        glo, ghi = r["group_range"]
        table.add_row(r["db"], f"{r['tasks']:,}", f"{r['independent_enqueue_s']:.2f} s",
                      f"{r['group_enqueue_s']:.2f} s",
                      f"{r['independent_drain_s']:.2f} s ({lo:.2f}–{hi:.2f})",
                      f"{r['group_drain_s']:.2f} s ({glo:.2f}–{ghi:.2f})", f"{r['ratio']:.2f}x")
    Console(width=150).print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["independent_drain_s"] for r in rows], width=0.4,
           color="#63b3ed", label="independent tasks")
    ax.bar([i + 0.2 for i in x], [r["group_drain_s"] for r in rows], width=0.4, color="#2b6cb0",
           label="a group + chord callback")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r["group_drain_s"], f"{r['ratio']:.2f}x", ha="center", va="bottom")
    ax.set_xticks(list(x), [r["db"] for r in rows])
    ax.set_ylabel("seconds to drain (first start to last finish)")
    ax.set_title(f"{rows[0]['tasks']:,} no-op tasks, offload worker --burst")
    ax.legend()
    fig.tight_layout()
    fig.savefig(chart_path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report", action="store_true",
                        help="run each database, print the table and draw the chart")
    args = parser.parse_args()
    if args.report:
        from bench.run import run_json

        save_rows("workflow", run_json([sys.executable, __file__, "--db", args.db, "--tasks",
                                        str(args.tasks), "--rounds", str(args.rounds)], "offload"),
                  report)
        return
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"]}):
        print(json.dumps(measure(args.db, args.tasks, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
