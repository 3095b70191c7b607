"""Rate limit across servers: 200 tasks under ``rate_limit="20/s"`` (burst 1), drained
by two servers with no flags. Reports how long the starts took (199 intervals of 50 ms:
9.95 s) and the most starts in any one-second window (at most 20 + the burst), and
draws the starts over time against the limit's line. A start is the task's claim
(``last_attempted_at``), as the limit counts it. ``--busy N`` keeps N processes spinning
on the CPU meanwhile (a loaded machine: claims come late), to show the limit still holds.

    .venv/bin/python bench/rate_limit.py --db both --report
    .venv/bin/python bench/rate_limit.py --db both --report --busy 2
    .venv/bin/python bench/rate_limit.py --db postgres --tasks 400 --rate 40/s --burst 5
"""

import argparse
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import progress, run_each, save_rows, setup_django, start_worker  # noqa: E402


def most_in_window(starts, window=1.0):
    most, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def measure(db, tasks, rate, burst, servers, busy):
    setup_django(db)
    from django.db import connection

    from bench.tasks import stamp
    from offload import bulk_enqueue
    from offload.conf import parse_rate
    from offload.models import TaskRow

    workers = [start_worker(db) for _ in range(servers)]
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(3)  # both servers up and idle before the burst arrives
        progress(f"[{db}] {tasks} tasks at {rate} (burst {burst}) across {servers} servers"
                 + (f", {busy} processes spinning" if busy else ""))
        bulk_enqueue(stamp.using(rate_limit=rate, rate_burst=burst), [((), {})] * tasks)
        deadline = time.monotonic() + 10 * tasks * parse_rate(rate) + 60
        while TaskRow.objects.filter(status="SUCCESSFUL").count() < tasks:
            if time.monotonic() > deadline:
                sys.exit("the rate-limited tasks did not finish")
            time.sleep(0.1)
        rows = list(TaskRow.objects.values_list("last_attempted_at", "return_value", "claimed_by"))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
        connection.close()
    claims = sorted(r[0].timestamp() for r in rows)
    bodies = sorted(float(r[1]) for r in rows)
    interval = parse_rate(rate)
    return {"system": "offload", "db": db, "metric": "rate_limit", "tasks": tasks, "rate": rate,
            "burst": burst, "servers": servers, "busy": busy,
            "expected_s": round((tasks - burst) * interval, 3),
            "took_s": round(claims[-1] - claims[0], 3),
            "most_per_s": most_in_window(claims), "allowed_per_s": round(1 / interval) + burst,
            "body_most_per_s": most_in_window(bodies),
            "closest_ms": round(1000 * min(b - a for a, b in itertools.pairwise(claims[burst - 1:])), 1),
            "starts": [round(t - claims[0], 4) for t in claims]}


def report(rows, chart_path):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Rate limit across servers: starts of rate-limited tasks")
    for col in ("database", "tasks", "rate", "servers", "spinning", "took", "expected",
                "most in 1 s", "allowed", "closest after the burst"):
        table.add_column(col, justify="left" if col in ("database", "rate") else "right")
    for r in rows:
        table.add_row(r["db"], str(r["tasks"]), f"{r['rate']} burst {r['burst']}", str(r["servers"]),
                      str(r.get("busy", 0)), f"{r['took_s']:.2f} s", f"{r['expected_s']:.2f} s",
                      str(r["most_per_s"]), str(r["allowed_per_s"]), f"{r['closest_ms']:.1f} ms")
    Console(width=150).print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = ("#2b6cb0", "#dd6b20")
    for r, color in zip(rows, colors, strict=False):
        ax.step(r["starts"], range(1, len(r["starts"]) + 1), where="post", color=color,
                label=f"{r['db']}: started")
    r = rows[0]
    per_s = r["allowed_per_s"] - r["burst"]
    xs = [0, r["starts"][-1]]
    ax.plot(xs, [r["burst"] + per_s * x for x in xs], color="#c53030", linestyle="--",
            linewidth=1, label=f"limit: {r['burst']} + {per_s}/s × t")
    ax.set_xlabel("seconds since the first start")
    ax.set_ylabel("tasks started")
    ax.set_title(f"{r['tasks']} tasks at {r['rate']} across {r['servers']} servers")
    ax.legend()
    width = 0.8 / len(rows)
    for i, (r, color) in enumerate(zip(rows, colors, strict=False)):
        seconds = int(r["starts"][-1]) + 1
        counts = [sum(1 for t in r["starts"] if s <= t < s + 1) for s in range(seconds)]
        bars.bar([s + i * width for s in range(seconds)], counts, width=width, color=color,
                 label=r["db"])
    bars.axhline(r["allowed_per_s"], color="#c53030", linestyle="--", linewidth=1,
                 label=f"allowed in any second: {r['allowed_per_s']}")
    bars.set_xlabel("second since the first start")
    bars.set_ylabel("starts in that second")
    bars.set_title("starts per second")
    bars.set_ylim(0, r["allowed_per_s"] * 1.4)
    bars.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(chart_path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rate", default="20/s")
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--busy", type=int, default=0,
                        help="processes spinning on the CPU while it runs")
    parser.add_argument("--report", action="store_true",
                        help="run each database, print the table and draw the chart")
    args = parser.parse_args()
    if args.report:
        from bench.run import run_json

        save_rows("rate_limit" + (f"_busy{args.busy}" if args.busy else ""), run_json([
            sys.executable, __file__, "--db", args.db, "--tasks", str(args.tasks), "--rate",
            args.rate, "--burst", str(args.burst), "--servers", str(args.servers),
            "--busy", str(args.busy)], "offload"),
            report)
        return
    if not run_each(__file__, args, {"db": ["sqlite", "postgres"]}):
        print(json.dumps(measure(args.db, args.tasks, args.rate, args.burst, args.servers,
                                 args.busy)),
              flush=True)


if __name__ == "__main__":
    main()
