"""Drain throughput and pickup latency before and after a change: bench/drain.py (and,
with ``--pickup``, bench/latency.py) of a base revision and of this working tree, run in
turns (so both see the same machine load); steady drain tasks/s and pickup p50 per
database, as median and range over the rounds.

    .venv/bin/python bench/drain_ab.py 26bdf97 --rounds 6
    .venv/bin/python bench/drain_ab.py 26bdf97 --rounds 4 --pickup --samples 100
    .venv/bin/python bench/drain_ab.py 26bdf97 --rounds 4 --threads 4   # the worker's default

The base revision is exported to a temporary folder; a link ``offload -> src/offload``
at its root puts its package ahead of this tree's (bench/ puts the root on sys.path).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _runs(tree, args):
    """``{(db, metric): value}`` of one round in ``tree``."""
    found = {}
    command = [sys.executable, "bench/drain.py", "--db", args.db, "--tasks", str(args.tasks)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    out = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True,
                         env=os.environ).stdout
    for line in out.splitlines():
        r = json.loads(line)
        found[(r["db"], "drain tasks/s")] = r["tasks"] / r["first_start_to_last_finish_s"]
    if args.pickup:
        out = subprocess.run([sys.executable, "bench/latency.py", "--db", args.db, "--samples",
                              str(args.samples)], cwd=tree, check=True, capture_output=True,
                             text=True, env=os.environ).stdout
        for line in out.splitlines():
            r = json.loads(line)
            found[(r["db"], "pickup p50 ms")] = r["p50_ms"]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pickup", action="store_true", help="also measure pickup latency")
    parser.add_argument("--samples", type=int, default=100, help="pickup probes per round")
    parser.add_argument("--threads", type=int, help="drain.py's --threads (default: drain.py's, 64)")
    args = parser.parse_args()
    values = {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        (Path(tmp) / "offload").symlink_to("src/offload")
        for n in range(args.rounds):
            for label, tree in (("before", Path(tmp)), ("after", ROOT)):
                print(f"round {n + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
                for (db, metric), value in _runs(tree, args).items():
                    values.setdefault((db, metric, label), []).append(value)
    for db, metric in sorted({(db, metric) for db, metric, _ in values}):
        before, after = values[(db, metric, "before")], values[(db, metric, "after")]
        b, a = statistics.median(before), statistics.median(after)
        digits = 0 if metric.startswith("drain") else 2
        print(json.dumps({"db": db, "metric": metric, "rounds": args.rounds,
                          "before_median": round(b, digits), "after_median": round(a, digits),
                          "before_range": [round(min(before), digits), round(max(before), digits)],
                          "after_range": [round(min(after), digits), round(max(after), digits)],
                          "change_pct": round((a / b - 1) * 100, 1)}))


if __name__ == "__main__":
    main()
