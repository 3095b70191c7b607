"""Peer benchmark: PgQueuer (PostgreSQL, asyncpg driver).

Same measurements and JSON shape as ../dtdb/dtdb_bench.py, in its own database
``bench_peer_pgqueuer`` (created, ``pgq install``-ed with the default durability,
dropped at the end):

* drain (``"task": "noop"``) - N no-op jobs enqueued up front with PgQueuer's batch
  enqueue (``Queries.enqueue`` with lists: one INSERT ... UNNEST for all of them), the
  table ANALYZEd (as dtdb_bench.py does; ``--no-analyze`` skips it), then ``--workers``
  worker processes in drain mode (``pgqueuer_peer.py``: ``pgqueuer.run``, which is
  what ``pgq run --mode drain`` runs) are started and run until the queue is empty.
  Drain time runs from worker spawn to the last ``successful`` row in ``pgqueuer_log``
  (written when the worker flushes its status buffer, at most ~0.1 s after the job
  ends); the steady figure from the first ``picked`` row to that. Every job must have
  a ``successful`` log row and the queue table must be empty (``verified``).
* drain (``"task": "anap"``) - the same with ``async def`` jobs that each await
  ``asyncio.sleep(0.1)`` (``--anap-tasks``, default 2000 and 10000), the I/O-bound
  workload of Offload's ``bench/drain.py --task anap``.
* pickup - idle workers (continuous mode, LISTEN/NOTIFY); one probe job
  at a time, latency = time.time() in the job body (sent back with pg_notify) minus
  time.time() taken just before ``enqueue()``.

Worker settings (see the module docstring of pgqueuer_peer.py for the handlers):

* 2 worker processes (= cores); each is one asyncio event loop on one connection.
* ``--batch-size`` 200 (PgQueuer's default is 10): jobs claimed per dequeue query;
  the status-log buffer flushes every batch-size jobs too (PgQueuer ties them). Of
  10, 25, 50, 100, 200 and 500 on the 10k noop drain, 200 was the fastest (about
  40k/s steady against 6-9k/s at 10 and 15-29k/s at 50-100; 500 no faster).
* ``--max-concurrent-tasks`` unlimited (PgQueuer's default) for both drains: for the
  anap drain every fetched job sleeps concurrently; caps of 1000 and 2500 per process
  were no faster (a cap must be at least twice the batch size), nor were batch
  sizes of 50 or 500.
* ``--dequeue-timeout`` 1 s in drain mode only: it bounds how long an idle drain
  worker waits before noticing that the queue is empty (no effect while it is busy);
  pickup uses the default 30 s fallback poll, LISTEN/NOTIFY does the waking.
* durability ``durable`` (PgQueuer's default: logged tables, like every other queue
  measured here).

``--delay-ms MS`` puts the database a network hop away, as in Offload's bench/drain.py
and bench/latency.py: for each measurement bench/netdelay.py (stdlib only, imported by
path) runs in a process of its own, adding MS each way, and this harness's connection
(enqueue, LISTEN for the probes, the checks) and the workers' (PGPORT) go through it;
creating, ``pgq install``-ing and dropping the database stay direct. Every row has
``"delay_ms"`` (0 = off) and, with a delay, the delay the proxy held per chunk
(``proxy_held_p50_ms``/``p99``) and its CPU time (``proxy_cpu_s``).

CPU per drain task (``cpu_us_per_task``): CPU of the worker processes (getrusage of
the exited children, start-up included) plus that of the PostgreSQL backends serving
``bench_peer_pgqueuer`` (sampled from /proc, peerutil.PostgresCPU), over the drain.

Prints one JSON object per measurement on stdout; progress goes to stderr. Only
worker processes started here are ever signalled (by PID), every wait has a deadline
and only 127.0.0.1 is contacted.
"""

import argparse
import asyncio
import functools
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from peerutil import (  # noqa: E402
    HostCPU,
    PostgresCPU,
    children_cpu_seconds,
    cpu_fields,
    cpu_seconds,
    descendants,
    die_with_parent,
    emit,
    percentiles,
    stderr_logger,
    wait_for_quiet,
)

PG_NAME = "bench_peer_pgqueuer"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
log = stderr_logger("pgqueuer postgres")


@functools.cache
def _netdelay():
    """bench/netdelay.py, imported by path, once (stdlib only: it runs in this venv too)."""
    path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "netdelay.py")
    spec = importlib.util.spec_from_file_location("netdelay", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def database_hop(delay_ms, seconds):
    """PostgreSQL a network hop away for the block: bench/netdelay.py in a process of its
    own, ``delay_ms`` each way; yields the port to connect to (PGPORT points there for
    the workers started in the block) and the proxy (None when ``delay_ms`` is 0; its
    ``summary`` after the block)."""
    if not delay_ms:
        yield PG["port"], None
        return
    with _netdelay().delayed_process(target=(PG["host"], PG["port"]), delay_ms=delay_ms,
                                     seconds=seconds) as proxy:
        log(f"PostgreSQL through bench/netdelay.py on port {proxy.port}, {delay_ms} ms each way")
        os.environ["PGPORT"] = str(proxy.port)
        try:
            yield proxy.port, proxy
        finally:
            os.environ["PGPORT"] = str(PG["port"])
    log(_netdelay().summary_line(proxy))


def hop_fields(delay_ms, proxy):
    """The JSON fields of a run with ``database_hop`` (bench/netdelay.py's run_fields)."""
    return _netdelay().run_fields(delay_ms, proxy)


class Workers:
    """pgqueuer_peer.py worker subprocesses owned by this benchmark (tracked by PID)."""

    def __init__(self, args, logpath, mode):
        self.logfile = open(logpath, "ab")
        self.cmd = [sys.executable, os.path.join(HERE, "pgqueuer_peer.py"),
                    "--mode", mode, "--batch-size", str(args.batch_size)]
        if mode == "drain":
            self.cmd += ["--dequeue-timeout", "1"]
        if args.max_concurrent:
            self.cmd += ["--max-concurrent-tasks", str(args.max_concurrent)]
        self.procs = [subprocess.Popen(self.cmd, cwd=HERE, env=os.environ.copy(), stdout=self.logfile,
                                       stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
                      for _ in range(args.workers)]

    def pids(self):
        return [pid for p in self.procs for pid in (p.pid, *descendants(p.pid))]

    def check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker pid {p.pid} exited early with {p.returncode}")

    async def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.procs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not finish within {timeout}s")
            await asyncio.sleep(0.05)
        bad = [p.returncode for p in self.procs if p.returncode]
        if bad:
            raise RuntimeError(f"worker(s) exited with {bad}")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # graceful: finish running jobs, flush logs
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.logfile.close()


def settings(args):
    cap = args.max_concurrent or "unlimited"
    return {"workers": args.workers, "batch_size": args.batch_size, "max_concurrent_tasks": cap,
            "settings": f"{args.workers} x pgqueuer.run, batch {args.batch_size}, max concurrent {cap}, "
                        f"asyncpg, durable"}


def common(args):
    return {"system": "pgqueuer", "version": version("pgqueuer"), "db": "postgres",
            "driver": f"asyncpg {version('asyncpg')}"}


async def recreate_db(drop_only):
    import asyncpg

    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        if not drop_only:
            await conn.execute(f"CREATE DATABASE {PG_NAME}")
    finally:
        await conn.close()


async def drain(conn, queries, args, task, n, logpath):
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    log(f"enqueueing {n} {task} jobs in one batch")
    t0 = time.perf_counter()
    ids = await queries.enqueue([task] * n, [None] * n, [0] * n)
    enqueue_s = time.perf_counter() - t0
    if len(ids) != n:
        raise RuntimeError(f"enqueue returned {len(ids)} ids for {n} jobs")
    log(f"enqueued in {enqueue_s:.2f}s")
    if args.analyze:
        await conn.execute("ANALYZE pgqueuer")
    idle = wait_for_quiet(log)
    log(f"starting {args.workers} drain worker(s): batch {args.batch_size}, "
        f"max concurrent {args.max_concurrent or 'unlimited'}")
    host = HostCPU().start()
    db_cpu = PostgresCPU(PG_NAME).start()
    cpu0 = children_cpu_seconds()
    wall_start = time.time()
    pool = Workers(args, logpath, "drain")
    try:
        await pool.wait(args.timeout)
    finally:
        pool.stop()
    worker_cpu = children_cpu_seconds() - cpu0
    db_cpu_s = db_cpu.stop()
    host_busy = host.busy_pct()

    row = await conn.fetchrow(
        """SELECT count(DISTINCT job_id) FILTER (WHERE status = 'successful') AS ok,
                  min(created) FILTER (WHERE status = 'picked') AS first,
                  max(created) FILTER (WHERE status = 'successful') AS last
           FROM pgqueuer_log WHERE entrypoint = $1 AND job_id = ANY($2::bigint[])""", task, ids)
    left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    ok = row["ok"]
    if ok != n or left or row["last"] is None:
        raise RuntimeError(f"only {ok}/{n} jobs successful, {left} left in the queue; see {logpath}")
    seconds = row["last"].timestamp() - wall_start
    busy = (row["last"] - row["first"]).total_seconds()
    return {**common(args), "metric": "drain", "task": task, "tasks": n, **settings(args),
          "seconds": round(seconds, 3), "tasks_per_s": round(n / seconds, 1),
          "first_start_to_last_finish_s": round(busy, 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(n / enqueue_s, 1),
          "verified": ok, **cpu_fields(n, worker_cpu, db_cpu_s),
          "analyzed": args.analyze, "host_busy_before_pct": idle, "host_busy_pct": host_busy}


async def pickup(conn, queries, args, logpath):
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    waiting = {}

    def on_notify(_conn, _pid, _channel, payload):
        key, started = payload.split()
        fut = waiting.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(float(started))

    await conn.add_listener("bench_probe", on_notify)
    sent = []

    async def one(timeout=10.0):
        key = str(len(sent))
        fut = waiting[key] = asyncio.get_running_loop().create_future()
        t0 = time.time()
        sent.extend(await queries.enqueue("probe", key.encode()))
        try:
            started = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pool.check_alive()
            raise RuntimeError(f"probe {key} did not start within {timeout}s; see {logpath}") from None
        return (started - t0) * 1000.0

    idle = wait_for_quiet(log)
    log(f"starting {args.workers} idle worker(s)")
    pool = Workers(args, logpath, "continuous")
    try:
        await one(timeout=30.0)  # first probe doubles as "workers are up"
        for _ in range(5):
            await one()
        cpu0, wall0, host = cpu_seconds(pool.pids()), time.monotonic(), HostCPU().start()
        lat = []
        for i in range(args.samples):
            await asyncio.sleep(random.uniform(0.02, 0.05))
            lat.append(await one())
            if (i + 1) % 50 == 0:
                log(f"pickup {i + 1}/{args.samples}")
        cpu_pct = 100.0 * (cpu_seconds(pool.pids()) - cpu0) / (time.monotonic() - wall0)
        host_busy = host.busy_pct()
        # Every probe must also be logged successful (the status buffer flushes within ~0.1 s).
        limit = time.monotonic() + 10
        while True:
            ok = await conn.fetchval("SELECT count(DISTINCT job_id) FROM pgqueuer_log "
                                     "WHERE status = 'successful' AND job_id = ANY($1::bigint[])", sent)
            if ok == len(sent) or time.monotonic() > limit:
                break
            await asyncio.sleep(0.05)
    finally:
        pool.stop()
        await conn.remove_listener("bench_probe", on_notify)
    if ok != len(sent):
        raise RuntimeError(f"only {ok}/{len(sent)} probes logged successful; see {logpath}")
    return {**common(args), "metric": "pickup", **settings(args), **percentiles(lat),
            "verified": ok, "worker_cpu_pct": round(cpu_pct, 1),
            "host_busy_before_pct": idle, "host_busy_pct": host_busy}


async def measured(args, measure, *more):
    """One measurement on a connection of its own, through the proxy with ``--delay-ms``."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    with database_hop(args.delay_ms, args.timeout + 600) as (port, proxy):
        conn = await asyncpg.connect(database=PG_NAME, **{**PG, "port": port})
        try:
            row = await measure(conn, Queries(AsyncpgDriver(conn)), args, *more)
        finally:
            await conn.close()
    emit({**row, **hop_fields(args.delay_ms, proxy)})


async def run(args):
    os.environ.update({"PGHOST": PG["host"], "PGPORT": str(PG["port"]), "PGUSER": PG["user"],
                       "PGDATABASE": PG_NAME})
    logpath = f"/tmp/bench_peer_pgqueuer_{os.getpid()}.log"
    await recreate_db(drop_only=False)
    try:
        subprocess.run([sys.executable, "-m", "pgqueuer", "install"], check=True, timeout=120,
                       stdout=subprocess.DEVNULL)
        if args.tasks:
            await measured(args, drain, "noop", args.tasks, logpath)
        for n in args.anap_tasks:
            await measured(args, drain, "anap", n, logpath)
        if args.samples:
            await measured(args, pickup, logpath)
        if os.path.exists(logpath):
            os.unlink(logpath)
    except BaseException:
        log(f"FAILED; worker log: {logpath}")
        raise
    finally:
        await recreate_db(drop_only=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10000, help="no-op drain size (0 skips it)")
    ap.add_argument("--anap-tasks", type=lambda s: [int(x) for x in s.split(",") if x.strip() and int(x)],
                    default=[2000, 10000], help="comma-separated anap drain sizes ('0' skips them)")
    ap.add_argument("--samples", type=int, default=200, help="pickup probes (0 skips pickup)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    ap.add_argument("--batch-size", type=int, default=200, help="--batch-size (default: 200)")
    ap.add_argument("--max-concurrent", type=int, default=0,
                    help="--max-concurrent-tasks per process (default: 0 = unlimited)")
    ap.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                    help="ANALYZE the queue table after the bulk enqueue (default: on)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="deadline in seconds for each drain (default: 300)")
    ap.add_argument("--delay-ms", type=float, default=0,
                    help="PostgreSQL a hop away: this one-way delay (bench/netdelay.py); 0 = off")
    ap.add_argument("--db", default="postgres", choices=["postgres", "both"],
                    help="accepted for symmetry with dtdb_bench.py; always PostgreSQL")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
