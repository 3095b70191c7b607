"""Peer benchmark: Celery 5.x with Redis (db 15) as broker and result backend.

Same measurements and JSON shape as ../dtdb/dtdb_bench.py:

* drain  - N no-op tasks published up front (``apply_async`` over one
  producer connection), then a worker is started and runs until every task's
  result is stored.  Drain time runs from worker spawn to the latest
  ``date_done``; every result must be SUCCESS.
* pickup - idle worker; one probe task at a time, latency = time.time() in
  the task body minus time.time() taken just before ``apply_async()``.

Worker settings (fastest honest ones for tiny tasks, see celery_peer.py too):

* ``--pool``/``--concurrency``: default prefork with 2 processes (= cores),
  Celery's default pool.  ``--pool solo`` / ``threads`` can be tried.
* prefetch multiplier 64 (Celery's own advice for many short tasks is a high
  value) and ``task_acks_late=False`` (the default: ack on receipt).
* ``--without-gossip --without-mingle --without-heartbeat``: no cluster
  chatter with a single worker; rate limits disabled; no task events.
* Results are kept (Redis result backend) so every task can be verified.

CPU per drain task (``cpu_us_per_task``): CPU of the worker and its pool processes
(getrusage of the exited children, start-up included) plus that of the redis-server
process over the drain (every client of that server counts).

Only Redis db 15 is used and flushed (before and after).  Only worker
processes started here are signalled (by PID); every wait has a deadline.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from peerutil import (  # noqa: E402
    HostCPU,
    RedisCPU,
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

REDIS_URL = "redis://127.0.0.1:6379/15"
log = stderr_logger("celery redis")


class Worker:
    """One ``celery worker`` subprocess owned by this benchmark."""

    def __init__(self, args, logpath, hostname=None):
        self.logfile = open(logpath, "ab")
        cmd = [sys.executable, "-m", "celery", "-A", "celery_peer", "worker",
               "--pool", args.pool, "--concurrency", str(args.concurrency),
               "--prefetch-multiplier", str(args.prefetch),
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "--loglevel", "WARNING", "--hostname", hostname or f"bench{os.getpid()}@%h"]
        self.proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=self.logfile,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def cpu_seconds(self):
        return cpu_seconds([self.proc.pid, *descendants(self.proc.pid)])

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker pid {self.proc.pid} exited with {self.proc.returncode}")

    def stop(self):
        if self.proc.poll() is None:
            children = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *children]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(timeout=10)
        self.logfile.close()


def common(args):
    return {"system": "celery", "version": version("celery"), "db": "redis",
            "pool": args.pool, "concurrency": args.concurrency,
            "prefetch_multiplier": args.prefetch}


def fetch_results(r, ids):
    metas = []
    for i in range(0, len(ids), 2000):
        keys = [f"celery-task-meta-{t}" for t in ids[i:i + 2000]]
        metas += [json.loads(v) if v else None for v in r.mget(keys)]
    return metas


def drain(app, r, args, logpath):
    from celery_peer import noop

    n = args.tasks
    log(f"publishing {n} no-op tasks")
    t0 = time.perf_counter()
    with app.producer_or_acquire() as producer:
        ids = [noop.apply_async(producer=producer).id for _ in range(n)]
    enqueue_s = time.perf_counter() - t0
    log(f"published in {enqueue_s:.2f}s")
    idle = wait_for_quiet(log)
    log("starting worker")
    host, server = HostCPU().start(), RedisCPU().start()
    cpu0 = children_cpu_seconds()
    wall_start = time.time()
    worker = Worker(args, logpath)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            time.sleep(0.25)
            if r.dbsize() >= n:  # cheap check first: one meta key per task
                metas = fetch_results(r, ids)
                if all(metas):
                    break
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain did not finish within {args.timeout}s; see {logpath}")
    finally:
        worker.stop()
    worker_cpu, redis_cpu = children_cpu_seconds() - cpu0, server.stop()
    host_busy = host.busy_pct()
    ok = sum(m["status"] == "SUCCESS" for m in metas)
    if ok != n:
        raise RuntimeError(f"only {ok}/{n} tasks SUCCESS; see {logpath}")
    done = sorted(datetime.fromisoformat(m["date_done"]).timestamp() for m in metas)
    seconds = done[-1] - wall_start
    emit({**common(args), "metric": "drain", "task": "noop", "tasks": n,
          "seconds": round(seconds, 3), "tasks_per_s": round(n / seconds, 1),
          "first_to_last_finish_s": round(done[-1] - done[0], 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(n / enqueue_s, 1),
          "verified": ok, **cpu_fields(n, worker_cpu, redis_cpu),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})


def pickup(args, logpath):
    from celery_peer import probe

    def one(timeout=10.0):
        t0 = time.time()
        result = probe.apply_async()
        value = result.get(timeout=timeout)  # waits on the backend's pub/sub
        if result.status != "SUCCESS":
            raise RuntimeError(f"probe {result.id} ended {result.status}")
        result.forget()
        return (value - t0) * 1000.0

    idle = wait_for_quiet(log)
    log(f"starting idle worker ({args.pool} x{args.concurrency})")
    worker = Worker(args, logpath)
    try:
        one(timeout=30.0)  # first probe doubles as "worker is up"
        for _ in range(5):
            one()
        cpu0, wall0, host = worker.cpu_seconds(), time.monotonic(), HostCPU().start()
        lat = []
        for i in range(args.samples):
            time.sleep(random.uniform(0.02, 0.05))
            lat.append(one())
            if (i + 1) % 50 == 0:
                log(f"pickup {i + 1}/{args.samples}")
        cpu_pct = 100.0 * (worker.cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        host_busy = host.busy_pct()
    finally:
        worker.stop()
    emit({**common(args), "metric": "pickup", **percentiles(lat),
          "worker_cpu_pct": round(cpu_pct, 1),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=64, help="worker prefetch multiplier")
    ap.add_argument("--timeout", type=float, default=300,
                    help="deadline in seconds for the drain phase (default: 300)")
    ap.add_argument("--db", default="redis", choices=["redis", "both"],
                    help="accepted for symmetry with dtdb_bench.py; always Redis")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    os.environ["PEER_REDIS_URL"] = REDIS_URL
    os.environ["PEER_PREFETCH"] = str(args.prefetch)
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, HERE)
    import redis
    from celery_peer import app

    r = redis.Redis.from_url(REDIS_URL, socket_timeout=30)
    logpath = f"/tmp/bench_peer_celery_{os.getpid()}.log"
    try:
        r.flushdb()  # db 15 only
        drain(app, r, args, logpath)
        r.flushdb()
        pickup(args, logpath)
        os.unlink(logpath)
    except Exception:
        log(f"FAILED; worker log: {logpath}")
        raise
    finally:
        r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
