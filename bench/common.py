"""Shared helpers for Offload's benchmarks: a fresh database, a worker process, stats."""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(db):
    os.environ["BENCH_DB"] = db
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    sys.path.insert(0, str(ROOT))
    import django

    if db == "postgres":
        import psycopg

        name = os.environ.get("BENCH_PG_DB", "offload_bench")
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
    else:
        for suffix in ("", "-wal", "-shm"):
            (ROOT / "var" / "bench" / f"bench.sqlite3{suffix}").unlink(missing_ok=True)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def database_hop(db, delay_ms):
    """PostgreSQL a network hop away for the block: bench/netdelay.py in a process of its
    own, ``delay_ms`` each way, and ``BENCH_PG_PORT`` pointing at it, so that Django in
    this process (set up inside the block) and the workers it starts go through it. The
    database is still created directly. Yields the proxy (``summary`` after the block),
    or None when ``delay_ms`` is 0."""
    if not delay_ms:
        yield None
        return
    if db != "postgres":
        raise SystemExit("--delay-ms needs --db postgres")
    from bench.netdelay import delayed_process, summary_line

    before = os.environ.get("BENCH_PG_PORT")
    with delayed_process(target=("127.0.0.1", 5432), delay_ms=delay_ms) as proxy:
        os.environ["BENCH_PG_PORT"] = str(proxy.port)
        progress(f"[{db}] PostgreSQL through bench/netdelay.py on port {proxy.port}, {delay_ms} ms each way")
        try:
            yield proxy
        finally:
            if before is None:
                os.environ.pop("BENCH_PG_PORT", None)
            else:
                os.environ["BENCH_PG_PORT"] = before
    progress(f"[{db}] {summary_line(proxy)}")


def hop_fields(delay_ms, proxy):
    """The JSON fields of a run with ``database_hop`` (bench/netdelay.py's run_fields)."""
    from bench.netdelay import run_fields

    return run_fields(delay_ms, proxy)


def worker_cmd(*args):
    return [sys.executable, "-m", "django", "offload", "worker", *args]


def worker_env(db):
    env = dict(os.environ, BENCH_DB=db, DJANGO_SETTINGS_MODULE="bench.settings", PYTHONPATH=str(ROOT))
    return env


def start_worker(db, *args):
    return subprocess.Popen(worker_cmd(*args), env=worker_env(db), cwd=ROOT)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def progress(message):
    print(message, file=sys.stderr, flush=True)


def run_each(script, args, split):
    """Run ``script`` once per combination of the options that say "both".

    Django is set up once per process, so each database (and mode) runs in its own
    interpreter. ``split`` maps an option's name to its values, for example
    ``{"db": ["sqlite", "postgres"], "ageing": ["on", "off"]}``. Returns False when no
    option says "both" (the caller then measures in this process).
    """
    import itertools

    split = {name: values for name, values in split.items() if getattr(args, name) == "both"}
    if not split:
        return False
    fixed = []
    for name, value in vars(args).items():
        if name in split or value is None or value is False:
            continue
        fixed += [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])
    for combo in itertools.product(*split.values()):
        chosen = [x for name, value in zip(split, combo, strict=True) for x in (f"--{name.replace('_', '-')}", value)]
        subprocess.run([sys.executable, script, *fixed, *chosen], check=True)
    return True


def wait_bars(ax, rows):
    """Each row's p50, p99 and max (``p50_ms``...) as three bars side by side on ``ax``."""
    x = range(len(rows))
    for offset, key, color in ((-0.27, "p50_ms", "#2b6cb0"), (0, "p99_ms", "#63b3ed"),
                               (0.27, "max_ms", "#bee3f8")):
        ax.bar([i + offset for i in x], [r[key] for r in rows], width=0.27, color=color,
               label=key.removesuffix("_ms"))
    return list(x)


def save_rows(name, rows, report):
    """Write ``rows`` to bench/results/<name>.json and ``report`` them (a table, and
    the chart bench/results/<name>.png)."""
    from bench.run import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    report(rows, RESULTS / f"{name}.png")
