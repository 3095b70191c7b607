"""Peer benchmark: Procrastinate (PostgreSQL, psycopg connector).

Same measurements and JSON shape as ../dtdb/dtdb_bench.py, in its own database
``bench_peer_procrastinate`` (created, schema applied, dropped at the end):

* drain (``"task": "noop"``) - N no-op jobs deferred up front with Procrastinate's
  batch API (``Task.batch_defer_async``: one query for all of them), the job table
  ANALYZEd (as dtdb_bench.py does; ``--no-analyze`` skips it), then ``--workers``
  ``procrastinate worker --one-shot`` processes are started and run until the queue
  is empty. Drain time runs from worker spawn to the last ``succeeded`` event in
  ``procrastinate_events``; the steady figure from the first ``started`` event to
  that. Every job must end ``succeeded`` (``verified``).
* drain (``"task": "anap"``) - the same with ``async def`` jobs that each await
  ``asyncio.sleep(0.1)`` (``--anap-tasks``, default 2000 and 10000), the I/O-bound
  workload of Offload's ``bench/drain.py --task anap``.
* pickup - idle workers (LISTEN/NOTIFY); one probe job at a time, latency =
  time.time() in the job body (sent back with pg_notify) minus time.time() taken just
  before ``defer_async()``.

Worker settings (the fastest found on this 2-core machine, see bench/peers/README.md):

* 2 worker processes (= cores); each is one asyncio event loop.
* ``--concurrency`` (jobs a worker runs at once) and ``--pool-size`` (its psycopg
  pool; Procrastinate's default is psycopg_pool's 4): 32 / 8 for the noop drain and
  pickup (of 1/4, 4/4, 8/4, 16/4, 16/8, 32/8, 64/16: 16/8 and 32/8 were best, ~10%
  over 8/4; 1 slot was ~35% slower), 200 / 8 for the anap drain (50 slots cap it at
  2 x 50 / 0.1 s = 1000/s; 100, 200 and 500 with pools of 8-20 were alike, 1000 no
  better). A slot fetches one job per query and reports it done with another; the
  drains are CPU-bound on 2 cores (workers plus PostgreSQL) well before the pool is.
* ``--log-level warning``: Procrastinate logs two INFO lines per job otherwise.
* LISTEN/NOTIFY on (the default); jobs are kept after completion (the default), so
  every one can be verified.

CPU per drain task (``cpu_us_per_task``): CPU of the worker processes (getrusage of
the exited children, start-up included) plus that of the PostgreSQL backends serving
``bench_peer_procrastinate`` (sampled from /proc, peerutil.PostgresCPU), over the drain.

Prints one JSON object per measurement on stdout; progress goes to stderr. Only
worker processes started here are ever signalled (by PID), every wait has a deadline
and only 127.0.0.1 is contacted.
"""

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
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

PG_NAME = "bench_peer_procrastinate"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
CONNINFO = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME}"
log = stderr_logger("procrastinate postgres")


class Workers:
    """``procrastinate worker`` subprocesses owned by this benchmark (tracked by PID)."""

    def __init__(self, args, logpath, concurrency, pool_size, one_shot):
        self.logfile = open(logpath, "ab")
        cmd = [sys.executable, "-m", "procrastinate", "--app=procrastinate_peer.app",
               "--log-level", "warning", "worker", "--concurrency", str(concurrency)]
        if one_shot:
            cmd.append("--one-shot")
        env = {**os.environ, "PEER_POOL_SIZE": str(pool_size)}
        self.procs = [subprocess.Popen(cmd, cwd=HERE, env=env, stdout=self.logfile,
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
                p.send_signal(signal.SIGTERM)  # graceful: running jobs finish
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.logfile.close()


def knobs(args, task):
    concurrency, pool = ((args.anap_concurrency, args.anap_pool_size) if task == "anap"
                         else (args.concurrency, args.pool_size))
    return concurrency, pool, {
        "workers": args.workers, "concurrency": concurrency, "pool_size": pool,
        "settings": f"{args.workers} x procrastinate worker, concurrency {concurrency}, "
                    f"pool {pool}, log-level warning"}


def common():
    return {"system": "procrastinate", "version": version("procrastinate"), "db": "postgres",
            "driver": f"psycopg {version('psycopg')}"}


def recreate_db(drop_only):
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {PG_NAME}")


async def drain(conn, args, task_name, n, logpath):
    import procrastinate_peer

    task = getattr(procrastinate_peer, task_name)
    await conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    log(f"deferring {n} {task_name} jobs in one batch")
    t0 = time.perf_counter()
    ids = await task.batch_defer_async(*([{}] * n))
    enqueue_s = time.perf_counter() - t0
    if len(ids) != n:
        raise RuntimeError(f"batch_defer returned {len(ids)} ids for {n} jobs")
    log(f"deferred in {enqueue_s:.2f}s")
    if args.analyze:
        await conn.execute("ANALYZE procrastinate_jobs")
    concurrency, pool_size, fields = knobs(args, task_name)
    idle = wait_for_quiet(log)
    log(f"starting {args.workers} --one-shot worker(s): concurrency {concurrency}, pool {pool_size}")
    host = HostCPU().start()
    db_cpu = PostgresCPU(PG_NAME).start()
    cpu0 = children_cpu_seconds()
    wall_start = time.time()
    pool = Workers(args, logpath, concurrency, pool_size, one_shot=True)
    try:
        await pool.wait(args.timeout)
    finally:
        pool.stop()
    worker_cpu = children_cpu_seconds() - cpu0
    db_cpu_s = db_cpu.stop()
    host_busy = host.busy_pct()

    cur = await conn.execute(
        """SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FROM procrastinate_jobs
           WHERE task_name = %s""", (task_name,))
    ok, total = await cur.fetchone()
    cur = await conn.execute(
        """SELECT min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type = 'succeeded')
           FROM procrastinate_events""")
    first, last = await cur.fetchone()
    if ok != n or total != n or last is None:
        raise RuntimeError(f"only {ok}/{n} jobs succeeded ({total} rows); see {logpath}")
    seconds = last.timestamp() - wall_start
    busy = (last - first).total_seconds()
    emit({**common(), "metric": "drain", "task": task_name, "tasks": n, **fields,
          "seconds": round(seconds, 3), "tasks_per_s": round(n / seconds, 1),
          "first_start_to_last_finish_s": round(busy, 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(n / enqueue_s, 1),
          "verified": ok, **cpu_fields(n, worker_cpu, db_cpu_s),
          "analyzed": args.analyze, "host_busy_before_pct": idle, "host_busy_pct": host_busy})


async def pickup(conn, args, logpath):
    import psycopg
    from procrastinate_peer import probe

    await conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    waiting, sent = {}, []
    listen = await psycopg.AsyncConnection.connect(CONNINFO, autocommit=True)
    await listen.execute("LISTEN bench_probe")

    async def receive():
        async for note in listen.notifies():
            key, started = note.payload.split()
            fut = waiting.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(float(started))

    receiver = asyncio.create_task(receive())

    async def one(timeout=10.0):
        key = str(len(sent))
        fut = waiting[key] = asyncio.get_running_loop().create_future()
        t0 = time.time()
        sent.append(await probe.defer_async(key=key))
        try:
            started = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pool.check_alive()
            raise RuntimeError(f"probe {key} did not start within {timeout}s; see {logpath}") from None
        return (started - t0) * 1000.0

    concurrency, pool_size, fields = knobs(args, "noop")
    idle = wait_for_quiet(log)
    log(f"starting {args.workers} idle worker(s)")
    pool = Workers(args, logpath, concurrency, pool_size, one_shot=False)
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
        limit = time.monotonic() + 10  # the last probe's status lands just after its notify
        while True:
            cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs "
                                     "WHERE status = 'succeeded' AND id = ANY(%s)", (sent,))
            (ok,) = await cur.fetchone()
            if ok == len(sent) or time.monotonic() > limit:
                break
            await asyncio.sleep(0.05)
    finally:
        pool.stop()
        receiver.cancel()
        await listen.close()
    if ok != len(sent):
        raise RuntimeError(f"only {ok}/{len(sent)} probes succeeded; see {logpath}")
    emit({**common(), "metric": "pickup", **fields, **percentiles(lat),
          "verified": ok, "worker_cpu_pct": round(cpu_pct, 1),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})


async def run(args):
    import psycopg

    os.environ["PEER_PG_NAME"] = PG_NAME
    os.environ["PEER_POOL_SIZE"] = "2"  # the harness's own pool (for defer)
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, HERE)
    from procrastinate_peer import app

    logpath = f"/tmp/bench_peer_procrastinate_{os.getpid()}.log"
    recreate_db(drop_only=False)
    try:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            conn = await psycopg.AsyncConnection.connect(CONNINFO, autocommit=True)
            try:
                if args.tasks:
                    await drain(conn, args, "noop", args.tasks, logpath)
                for n in args.anap_tasks:
                    await drain(conn, args, "anap", n, logpath)
                if args.samples:
                    await pickup(conn, args, logpath)
            finally:
                await conn.close()
        os.unlink(logpath)
    except BaseException:
        log(f"FAILED; worker log: {logpath}")
        raise
    finally:
        recreate_db(drop_only=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10000, help="no-op drain size (0 skips it)")
    ap.add_argument("--anap-tasks", type=lambda s: [int(x) for x in s.split(",") if x.strip() and int(x)],
                    default=[2000, 10000], help="comma-separated anap drain sizes ('0' skips them)")
    ap.add_argument("--samples", type=int, default=200, help="pickup probes (0 skips pickup)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    ap.add_argument("--concurrency", type=int, default=32,
                    help="worker --concurrency for the noop drain and pickup (default: 32)")
    ap.add_argument("--pool-size", type=int, default=8,
                    help="each worker's connection pool size for noop/pickup (default: 8)")
    ap.add_argument("--anap-concurrency", type=int, default=200,
                    help="worker --concurrency for the anap drain (default: 200)")
    ap.add_argument("--anap-pool-size", type=int, default=8,
                    help="each worker's connection pool size for the anap drain (default: 8)")
    ap.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                    help="ANALYZE the job table after the batch defer (default: on)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="deadline in seconds for each drain (default: 300)")
    ap.add_argument("--db", default="postgres", choices=["postgres", "both"],
                    help="accepted for symmetry with dtdb_bench.py; always PostgreSQL")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
