"""Run every benchmark — Offload and its peers, each peer in its own virtualenv — and
print one table; write ``bench/results/latest.json`` and ``bench/results/latest.png``.

    make bench                       # everything (sets up the peer venvs first)
    .venv/bin/python bench/run.py --no-peers --tasks 10000

Each harness prints JSON lines; this script only runs them and presents the results.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def run_json(cmd, label):
    print(f"→ {label}: {' '.join(map(str, cmd))}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    if proc.returncode:
        print(f"  {label} exited with {proc.returncode}", file=sys.stderr)
    return rows


def steady(r):
    """Tasks/s from the first task's start (or finish) to the last finish: no start-up."""
    busy = r.get("first_start_to_last_finish_s") or r.get("first_to_last_finish_s")
    return round(r["tasks"] / busy) if busy else None


def table(rows):
    from rich.console import Console
    from rich.table import Table

    drain = Table(title="Drain: no-op tasks, enqueued in bulk then drained (every task verified)")
    numeric = ("tasks", "tasks/s steady", "tasks/s incl. start-up", "enqueue/s")
    for col in ("system", "database", *numeric, "settings"):
        drain.add_column(col, justify="right" if col in numeric else "left")
    pickup = Table(title="Pickup latency on an idle server: enqueue → task start")
    for col in ("system", "database", "samples", "p50 ms", "p95 ms", "max ms"):
        pickup.add_column(col, justify="left" if col in ("system", "database") else "right")
    for r in rows:
        if r["metric"] == "drain":
            settings = ", ".join(f"{k}={r[k]}" for k in ("processes", "threads", "workers", "pool", "concurrency")
                                 if k in r)
            drain.add_row(r["system"], r["db"], f"{r['tasks']:,}", f"{steady(r):,}",
                          f"{round(r['tasks_per_s']):,}", f"{round(r.get('enqueue_per_s', 0)):,}",
                          settings)
        elif r["metric"] == "pickup":
            pickup.add_row(r["system"], r["db"], str(r["samples"]), f"{r['p50_ms']:.2f}",
                           f"{r['p95_ms']:.2f}", f"{r['max_ms']:.2f}")
    console = Console(width=150)
    console.print(drain)
    console.print(pickup)


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drain = [r for r in rows if r["metric"] == "drain"]
    pickup = [r for r in rows if r["metric"] == "pickup"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"{r['system']}\n{r['db']}" for r in drain]
    colors = ["#2b6cb0" if r["system"] == "offload" else "#a0aec0" for r in drain]
    a.bar(labels, [steady(r) for r in drain], color=colors)
    a.set_title("Drain throughput, steady (tasks/s, higher is better)")
    a.tick_params(axis="x", labelsize=8)
    labels = [f"{r['system']}\n{r['db']}" for r in pickup]
    x = range(len(pickup))
    a2 = [r["p50_ms"] for r in pickup]
    b.bar([i - 0.2 for i in x], a2, width=0.4, label="p50", color="#2b6cb0")
    b.bar([i + 0.2 for i in x], [r["p95_ms"] for r in pickup], width=0.4, label="p95", color="#90cdf4")
    b.set_xticks(list(x), labels, fontsize=8)
    b.set_yscale("log")
    b.set_title("Pickup latency (ms, log scale, lower is better)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    rows = []
    rows += run_json([py, "bench/drain.py", "--db", "both", "--tasks", str(args.tasks),
                      "--processes", "2", "--threads", "64"], "offload drain")
    rows += run_json([py, "bench/latency.py", "--db", "both", "--samples", str(args.samples)], "offload pickup")
    if not args.no_peers:
        subprocess.run(["bash", "bench/peers/setup.sh", "all"], cwd=ROOT, check=True,
                       stdout=sys.stderr)
        rows += run_json([ROOT / "bench/.venv-peers-dtdb/bin/python", "bench/peers/dtdb/dtdb_bench.py",
                          "--db", "both", "--tasks", str(args.tasks), "--samples", str(args.samples)],
                         "django-tasks-db")
        rows += run_json([ROOT / "bench/.venv-peers-celery/bin/python", "bench/peers/celery/celery_bench.py",
                          "--tasks", str(args.tasks), "--samples", str(args.samples)], "celery")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=1))
    table(rows)
    chart(rows, RESULTS / "latest.png")
    print(f"results: {RESULTS / 'latest.json'}  chart: {RESULTS / 'latest.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
