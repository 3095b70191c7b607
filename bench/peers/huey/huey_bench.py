"""Peer benchmark: Huey with Redis (db 14) as queue and result store.

Same measurements and JSON shape as ../celery/celery_bench.py:

* drain  - N no-op tasks enqueued up front (one ``noop()`` call each: Huey has no
  batch enqueue; ``Task.map`` loops over ``enqueue`` too), then ``huey_consumer`` is
  started as a subprocess and runs until every task's result is stored. Each task
  returns ``time.time()`` from its body (huey_peer.py), so drain time runs from
  consumer spawn to the latest of those and the steady figure from the first to
  the latest; every task id must have a float result (an error result is an
  ``Error`` object), i.e. ``verified``.
* pickup - idle consumer; one probe task at a time, latency = time.time() in the
  task body minus time.time() taken just before ``probe()``.

Consumer settings (the fastest on this 2-core machine, see bench/peers/README.md):

* ``-k process -w 4``: four worker processes, two per core. A worker spends much
  of each tiny task waiting on Redis round trips (BRPOP, the revoke check, storing
  the result), so a second process per core helped: on the 10k drain 2 processes
  made 5.6-6.3k/s steady, 3 7.8-8.5k/s, 4 8.7-9.2k/s, 6 and 8 no more; threads
  (1, 2, 8) 2.7-4.7k/s, as they share one GIL. ``--worker-type`` / ``--workers``
  try others.
* Redis storage with ``blocking=True`` (Huey's default for Redis): workers wait in
  BRPOP, so an idle consumer picks a task up at once (no polling back-off).
* ``-n`` (no periodic-task check: there are no periodic tasks), ``-q`` (warnings
  only: Huey logs every task at INFO otherwise).

CPU per drain task (``cpu_us_per_task``): CPU of the consumer and its worker
processes (getrusage of the exited children, start-up included) plus that of the
redis-server process over the drain (every client of that server counts).

Only Redis db 14 is used and flushed (before and after). Only processes started
here are signalled (by PID); every wait has a deadline.
"""

import argparse
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

REDIS_URL = "redis://127.0.0.1:6379/14"
log = stderr_logger("huey redis")


class Consumer:
    """One ``huey_consumer`` subprocess (and its workers) owned by this benchmark."""

    def __init__(self, args, logpath):
        self.logfile = open(logpath, "ab")
        cmd = [sys.executable, "-m", "huey.bin.huey_consumer", "huey_peer.huey",
               "-k", args.worker_type, "-w", str(args.workers), "-n", "-q"]
        self.proc = subprocess.Popen(cmd, cwd=HERE, env=os.environ.copy(), stdout=self.logfile,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def cpu_seconds(self):
        return cpu_seconds([self.proc.pid, *descendants(self.proc.pid)])

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"consumer pid {self.proc.pid} exited with {self.proc.returncode}")

    def stop(self):
        if self.proc.poll() is None:
            children = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGINT)  # Huey's graceful shutdown
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
    return {"system": "huey", "version": version("huey"), "db": "redis",
            "worker_type": args.worker_type, "workers": args.workers,
            "settings": f"huey_consumer -k {args.worker_type} -w {args.workers} -n -q, blocking BRPOP"}


def fetch_results(huey, ids):
    """Huey's stored results for ``ids``, deserialized; None where there is none."""
    conn, key, out = huey.storage.conn, huey.storage.result_key, []
    for i in range(0, len(ids), 2000):
        out += [None if v is None else huey.serializer.deserialize(v)
                for v in conn.hmget(key, ids[i:i + 2000])]
    return out


def drain(huey, args, logpath):
    from huey_peer import noop

    n = args.tasks
    log(f"enqueueing {n} no-op tasks")
    t0 = time.perf_counter()
    ids = [noop().id for _ in range(n)]
    enqueue_s = time.perf_counter() - t0
    log(f"enqueued in {enqueue_s:.2f}s")
    idle = wait_for_quiet(log)
    log(f"starting consumer ({args.worker_type} x{args.workers})")
    host, server = HostCPU().start(), RedisCPU().start()
    cpu0 = children_cpu_seconds()
    wall_start = time.time()
    consumer = Consumer(args, logpath)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            time.sleep(0.25)
            if huey.storage.result_store_size() >= n:  # cheap check first: HLEN
                break
            consumer.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain did not finish within {args.timeout}s; see {logpath}")
    finally:
        consumer.stop()
    worker_cpu, redis_cpu = children_cpu_seconds() - cpu0, server.stop()
    host_busy = host.busy_pct()
    results = fetch_results(huey, ids)
    done = sorted(v for v in results if isinstance(v, float))
    ok = len(done)
    if ok != n:
        raise RuntimeError(f"only {ok}/{n} tasks have a result; see {logpath}")
    seconds = done[-1] - wall_start
    emit({**common(args), "metric": "drain", "task": "noop", "tasks": n,
          "seconds": round(seconds, 3), "tasks_per_s": round(n / seconds, 1),
          "first_start_to_last_finish_s": round(done[-1] - done[0], 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(n / enqueue_s, 1),
          "verified": ok, **cpu_fields(n, worker_cpu, redis_cpu),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})


def pickup(args, logpath):
    from huey_peer import probe

    def one(timeout=10.0):
        t0 = time.time()
        result = probe()
        limit = time.monotonic() + timeout
        while True:
            value = result.get()  # TaskException if the task failed; pops the result
            if value is not None:
                return (value - t0) * 1000.0
            if time.monotonic() > limit:
                consumer.check_alive()
                raise RuntimeError(f"probe {result.id} not finished within {timeout}s")
            time.sleep(0.002)

    idle = wait_for_quiet(log)
    log(f"starting idle consumer ({args.worker_type} x{args.workers})")
    consumer = Consumer(args, logpath)
    try:
        one(timeout=30.0)  # first probe doubles as "consumer is up"
        for _ in range(5):
            one()
        cpu0, wall0, host = consumer.cpu_seconds(), time.monotonic(), HostCPU().start()
        lat = []
        for i in range(args.samples):
            time.sleep(random.uniform(0.02, 0.05))
            lat.append(one())
            if (i + 1) % 50 == 0:
                log(f"pickup {i + 1}/{args.samples}")
        cpu_pct = 100.0 * (consumer.cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        host_busy = host.busy_pct()
    finally:
        consumer.stop()
    emit({**common(args), "metric": "pickup", **percentiles(lat),
          "verified": len(lat) + 6, "worker_cpu_pct": round(cpu_pct, 1),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10000, help="no-op drain size (0 skips it)")
    ap.add_argument("--samples", type=int, default=200, help="pickup probes (0 skips pickup)")
    ap.add_argument("--worker-type", choices=["process", "thread"], default="process")
    ap.add_argument("--workers", type=int, default=4, help="consumer -w (default: 4)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="deadline in seconds for the drain phase (default: 300)")
    ap.add_argument("--db", default="redis", choices=["redis", "both"],
                    help="accepted for symmetry with dtdb_bench.py; always Redis")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    os.environ["PEER_REDIS_URL"] = REDIS_URL
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, HERE)
    from huey_peer import huey

    conn = huey.storage.conn
    logpath = f"/tmp/bench_peer_huey_{os.getpid()}.log"
    try:
        conn.flushdb()  # db 14 only
        if args.tasks:
            drain(huey, args, logpath)
        conn.flushdb()
        if args.samples:
            pickup(args, logpath)
        os.unlink(logpath)
    except Exception:
        log(f"FAILED; consumer log: {logpath}")
        raise
    finally:
        conn.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
