"""Run every benchmark — Offload and its peers, each peer in its own virtualenv — and
print one table; write ``bench/results/latest.json`` and ``bench/results/latest.png``.

    make bench                       # everything (sets up the peer venvs first)
    .venv/bin/python bench/run.py --no-peers --tasks 10000
    .venv/bin/python bench/run.py --no-offload --peers pgqueuer,procrastinate

Each harness prints JSON lines; this script only runs them and presents the results.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Peer name (its venv bench/.venv-peers-NAME, its folder bench/peers/NAME) -> harness, extra options.
PEERS = {
    "dtdb": ("dtdb_bench.py", ["--db", "both"]),
    "celery": ("celery_bench.py", []),
    "pgqueuer": ("pgqueuer_bench.py", ["--anap-tasks"]),
    "huey": ("huey_bench.py", []),
    "procrastinate": ("procrastinate_bench.py", ["--anap-tasks"]),
}


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


TASKS = {"noop": 0, "anap": 1}  # drain rows: the no-op drains first, then the coroutine ones


def drains(rows):
    return sorted((r for r in rows if r["metric"] == "drain"), key=lambda r: TASKS.get(r.get("task", "noop"), 2))


def settings(r):
    if r.get("settings"):
        return r["settings"]
    return ", ".join(f"{k}={r[k]}" for k in ("processes", "threads", "workers", "pool", "concurrency")
                     if r.get(k) is not None) or {"none": "worker defaults"}.get(r.get("flags"), r.get("flags", ""))


def cpu_per_task(r):
    """(worker + database server) CPU µs per task; "w" marks a figure of the worker
    processes alone (the row has no database-server CPU)."""
    if r.get("cpu_us_per_task") is not None:
        return f"{round(r['cpu_us_per_task']):,}"
    if r.get("worker_cpu_s") is not None:
        return f"{round(1e6 * r['worker_cpu_s'] / r['tasks']):,} w"
    return "—"


def table(rows):
    from rich.console import Console
    from rich.table import Table

    drain = Table(title="Drain: tasks enqueued in bulk then drained (every task verified); "
                        "noop = no-op, anap = async def awaiting 100 ms",
                  caption="CPU µs/task: worker processes (start-up included) + database server "
                          "(PostgreSQL backends of the bench database, or redis-server); "
                          "w = worker processes only")
    numeric = ("tasks", "tasks/s steady", "tasks/s incl. start-up", "enqueue/s", "CPU µs/task")
    for col in ("system", "database", "task", *numeric, "settings"):
        drain.add_column(col, justify="right" if col in numeric else "left")
    pickup = Table(title="Pickup latency on an idle server: enqueue → task start")
    for col in ("system", "database", "samples", "p50 ms", "p95 ms", "max ms"):
        pickup.add_column(col, justify="left" if col in ("system", "database") else "right")
    for r in drains(rows):
        drain.add_row(r["system"], r["db"], r.get("task", "noop"), f"{r['tasks']:,}", f"{steady(r):,}",
                      f"{round(r['tasks_per_s']):,}", f"{round(r.get('enqueue_per_s', 0)):,}",
                      cpu_per_task(r), settings(r))
    for r in rows:
        if r["metric"] == "pickup":
            pickup.add_row(r["system"], r["db"], str(r["samples"]), f"{r['p50_ms']:.2f}",
                           f"{r['p95_ms']:.2f}", f"{r['max_ms']:.2f}")
    console = Console(width=190)
    console.print(drain)
    console.print(pickup)


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drain = drains(rows)
    pickup = [r for r in rows if r["metric"] == "pickup"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(16, 6.5))
    def label(r):
        tuned = "" if r["system"] != "offload" else (" no flags" if r.get("flags") == "none" else " tuned")
        return f"{r['system']}{tuned} · {r['db']} · {r.get('task', 'noop')} {r['tasks'] / 1000:g}k"

    labels = [label(r) for r in drain]
    colors = [("#2b6cb0" if r.get("task", "noop") == "noop" else "#2f855a") if r["system"] == "offload"
              else ("#a0aec0" if r.get("task", "noop") == "noop" else "#9ae6b4") for r in drain]
    a.bar(range(len(drain)), [steady(r) for r in drain], color=colors)
    a.set_xticks(range(len(drain)), labels, fontsize=7, rotation=55, ha="right")
    a.set_title("Drain throughput, steady (tasks/s, higher is better; green: anap)")
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
    parser.add_argument("--anap-tasks", default="2000,10000",
                        help="comma-separated sizes of the coroutine (anap) drains on PostgreSQL "
                             "(default: 2000,10000; 0 skips them)")
    parser.add_argument("--no-offload", action="store_true", help="only the peers")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated peers to run (default: {','.join(PEERS)})")
    args = parser.parse_args()
    anap = [n.strip() for n in args.anap_tasks.split(",") if n.strip() and int(n)]
    peers = [] if args.no_peers else [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    size = ["--tasks", str(args.tasks), "--samples", str(args.samples)]
    py = sys.executable
    rows = []
    if not args.no_offload:
        # What a user gets (no flags), then tuned (more threads: a little more for no-ops).
        rows += run_json([py, "bench/drain.py", "--db", "both", "--tasks", str(args.tasks),
                          "--defaults"], "offload drain, no flags")
        rows += run_json([py, "bench/drain.py", "--db", "both", "--tasks", str(args.tasks),
                          "--processes", "2", "--threads", "16"], "offload drain, tuned")
        for n in anap:
            rows += run_json([py, "bench/drain.py", "--db", "postgres", "--task", "anap", "--tasks", n,
                              "--defaults"], f"offload anap drain {n}, no flags")
        rows += run_json([py, "bench/latency.py", "--db", "both", "--samples", str(args.samples)],
                         "offload pickup")
    if peers:
        subprocess.run(["bash", "bench/peers/setup.sh", "all"], cwd=ROOT, check=True,
                       stdout=sys.stderr)
    for peer in peers:
        script, extra = PEERS[peer]
        if "--anap-tasks" in extra:
            extra = [*extra, ",".join(anap) or "0"]
        rows += run_json([ROOT / f"bench/.venv-peers-{peer}/bin/python", f"bench/peers/{peer}/{script}",
                          *size, *extra], peer)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=1))
    table(rows)
    chart(rows, RESULTS / "latest.png")
    print(f"results: {RESULTS / 'latest.json'}  chart: {RESULTS / 'latest.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
