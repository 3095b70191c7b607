"""Peer priority benchmark: Celery on Redis, urgent tasks behind a big backlog.

Same workload and JSON shape as ../dtdb/dtdb_priority.py: two servers busy
with a backlog of ``--low`` (100,000) low-priority 20 ms tasks, then
``--urgent`` (200) urgent tasks published one every ``--every`` (25 ms).
Urgent wait = ``time.time()`` at the start of the urgent task's body (its
return value, read from the Redis result backend) minus ``time.time()`` just
before its ``apply_async()``.  Reports p50/p99/max, urgent tasks that did not
run within ``--timeout`` (120 s after the last publish) as ``urgent_missing``,
and ``low_started_during``: low messages taken off the broker list during the
urgent window (first urgent publish to last urgent start; the list length is
sampled every 50 ms, so it is approximate to a few tasks).

Priority uses Celery's documented Redis set-up (Routing guide, "Redis Message
Priorities"; see celery_peer.py): ``broker_transport_options`` with
``priority_steps`` 0-9, ``sep ':'`` and ``queue_order_strategy 'priority'``,
plus ``task_acks_late=True`` and ``worker_prefetch_multiplier=1``, which the
docs recommend so a worker does not hold prefetched low tasks.  On Redis a
LOWER number is a HIGHER priority: low = 9 (list ``celery:9``), urgent = 0
(list ``celery``).  Both kinds of task sleep 20 ms; low tasks store no result.

"Two servers" = two ``celery worker`` instances (own hostnames), each prefork
with ``--concurrency`` 2 (Celery's default: one process per core of a 2-core
server; 4 pool processes in all on this 2-core machine, fine as the tasks
sleep), ``--without-gossip --without-mingle --without-heartbeat``.

The backlog is published over one producer inside kombu's ``Producer.batch()``
(pipelined LPUSHes; plain ``apply_async`` per message with ``--no-batch``).
The workers are stopped as soon as the urgent tasks have run; the backlog is
not drained: Redis db 15 (the only one used) is flushed before and after.
"""

import argparse
import os
import signal
import sys
import time
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from celery_bench import Worker, fetch_results  # noqa: E402
from peerutil import HostCPU, emit, percentiles, stderr_logger, wait_for_quiet  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"
LOW, URGENT = 9, 0
LOW_LIST = "celery:9"  # priority_steps 0-9, sep ':'; priority 0 is the list "celery"
log = stderr_logger("celery redis priority")


def publish_backlog(app, n, batch):
    from celery_peer import low_work

    t0 = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for start in range(0, n, 5000):
            ctx = producer.batch(500) if batch else _null()
            with ctx:
                for _ in range(min(5000, n - start)):
                    low_work.apply_async(priority=LOW, producer=producer)
            done = min(n, start + 5000)
            if done % 20000 == 0 or done == n:
                log(f"published {done}/{n} low tasks ({done / (time.perf_counter() - t0):.0f}/s)")
    return time.perf_counter() - t0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def measure(app, r, args, logpath):
    from celery_peer import urgent_work

    enqueue_s = publish_backlog(app, args.low, args.batch)
    if r.llen(LOW_LIST) != args.low:
        raise RuntimeError(f"{LOW_LIST} holds {r.llen(LOW_LIST)} messages, not {args.low}")
    idle = wait_for_quiet(log)
    log(f"starting 2 servers ({args.pool} x{args.concurrency} each)")
    servers = []
    try:
        for i in range(2):
            servers.append(Worker(args, logpath, hostname=f"prio{os.getpid()}-{i}@%h"))
        limit = time.monotonic() + 60
        while args.low - r.llen(LOW_LIST) < args.warm:
            if time.monotonic() > limit:
                raise RuntimeError(f"{args.warm} low tasks not taken within 60s; see {logpath}")
            for s in servers:
                s.check_alive()
            time.sleep(0.1)
        log(f"servers busy ({args.low - r.llen(LOW_LIST)} low tasks taken); "
            f"sending {args.urgent} urgent tasks")

        host = HostCPU().start()
        sent = {}  # task id -> time.time() just before apply_async
        llen0, window_start = r.llen(LOW_LIST), time.time()
        t_next = time.monotonic()
        with app.producer_or_acquire() as producer:
            for _ in range(args.urgent):
                time.sleep(max(0.0, t_next - time.monotonic()))
                t_next += args.every
                t0 = time.time()
                sent[urgent_work.apply_async(priority=URGENT, producer=producer).id] = t0
        log(f"urgent tasks sent in {time.time() - window_start:.2f}s; waiting for them")

        ids, started, llen_at = list(sent), {}, []  # llen_at: (time, low list length)
        limit = time.monotonic() + args.timeout
        while len(started) < len(ids) and time.monotonic() < limit:
            time.sleep(0.05)
            llen_at.append((time.time(), r.llen(LOW_LIST)))
            for i, m in zip(ids, fetch_results(r, ids), strict=True):
                if m and m["status"] == "SUCCESS":
                    started[i] = m["result"]
            for s in servers:
                s.check_alive()
        host_busy = host.busy_pct()
    finally:
        for s in servers:
            s.stop()

    window_end = max(started.values(), default=time.time())
    llen1 = next((n for t, n in llen_at if t >= window_end), llen_at[-1][1] if llen_at else llen0)
    waits = [(started[i] - t0) * 1000.0 for i, t0 in sent.items() if i in started]
    emit({"system": "celery", "version": version("celery"), "db": "redis",
          "metric": "urgent_wait", "low_tasks": args.low, "urgent": args.urgent,
          "every_s": args.every, "servers": 2, "pool": args.pool,
          "concurrency": args.concurrency, **percentiles(waits, ps=(50, 99)),
          "urgent_done": len(waits), "urgent_missing": len(sent) - len(waits),
          "low_started_during": llen0 - llen1,
          "window_s": round(window_end - window_start, 3),
          "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(args.low / enqueue_s, 1),
          "host_busy_before_pct": idle, "host_busy_pct": host_busy,
          "settings": f"2 servers x {args.pool} {args.concurrency}, priority_steps 0-9 "
                      f"sep ':' queue_order_strategy priority, acks_late, prefetch "
                      f"multiplier 1, low={LOW} urgent={URGENT}, tasks sleep 20 ms"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--low", type=int, default=100000, help="backlog size (default: 100000)")
    ap.add_argument("--urgent", type=int, default=200, help="urgent tasks (default: 200)")
    ap.add_argument("--every", type=float, default=0.025,
                    help="seconds between urgent publishes (default: 0.025)")
    ap.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    ap.add_argument("--concurrency", type=int, default=2, help="per server (default: 2)")
    ap.add_argument("--warm", type=int, default=200,
                    help="low tasks taken before the urgent phase (default: 200)")
    ap.add_argument("--timeout", type=float, default=120,
                    help="deadline for the urgent tasks after the last publish (default: 120)")
    ap.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                    help="publish the backlog inside kombu Producer.batch() (default: on)")
    ap.add_argument("--db", default="redis", choices=["redis", "both"],
                    help="accepted for symmetry with dtdb_priority.py; always Redis")
    args = ap.parse_args()
    args.prefetch = 1  # worker_prefetch_multiplier, as Celery's docs advise for priorities
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    os.environ["PEER_REDIS_URL"] = REDIS_URL
    os.environ["PEER_PRIORITY"] = "1"
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    import redis
    from celery_peer import app

    r = redis.Redis.from_url(REDIS_URL, socket_timeout=30)
    logpath = f"/tmp/bench_peer_celery_prio_{os.getpid()}.log"
    try:
        r.flushdb()  # db 15 only
        measure(app, r, args, logpath)
        os.unlink(logpath)
    except Exception:
        log(f"FAILED; worker log: {logpath}")
        raise
    finally:
        r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
