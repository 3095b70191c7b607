"""Drain throughput before and after a change: bench/drain.py of a base revision and of
this working tree, run in turns (so both see the same machine load), steady tasks/s
per database as median and range.

    .venv/bin/python bench/drain_ab.py 26bdf97 --rounds 6

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    steady = {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        (Path(tmp) / "offload").symlink_to("src/offload")
        for n in range(args.rounds):
            for label, tree in (("before", Path(tmp)), ("after", ROOT)):
                print(f"round {n + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
                out = subprocess.run(
                    [sys.executable, "bench/drain.py", "--db", args.db, "--tasks", str(args.tasks)],
                    cwd=tree, check=True, capture_output=True, text=True, env=os.environ).stdout
                for line in out.splitlines():
                    r = json.loads(line)
                    steady.setdefault((r["db"], label), []).append(
                        r["tasks"] / r["first_start_to_last_finish_s"])
    for db in sorted({db for db, _ in steady}):
        before, after = statistics.median(steady[(db, "before")]), statistics.median(steady[(db, "after")])
        print(json.dumps({"db": db, "rounds": args.rounds, "tasks": args.tasks,
                          "before_median": round(before), "after_median": round(after),
                          "before_range": [round(min(steady[(db, "before")])), round(max(steady[(db, "before")]))],
                          "after_range": [round(min(steady[(db, "after")])), round(max(steady[(db, "after")]))],
                          "change_pct": round((after / before - 1) * 100, 1)}))


if __name__ == "__main__":
    main()
