"""PgQueuer worker for the peer benchmark: ``python pgqueuer_peer.py [--mode drain] ...``.

Runs ``pgqueuer.run(create, ...)``, the documented programmatic form of
``pgq run pgqueuer_peer:create`` (same supervisor, same uvloop event loop), because
``pgq run`` itself fails at start-up with the typer release pip resolves today
(``setup_fancy_logger``: 'str' object has no attribute 'name').

The database comes from PGHOST/PGPORT/PGUSER/PGDATABASE (set by pgqueuer_bench.py;
with its ``--delay-ms`` PGPORT is bench/netdelay.py's port, both connections go through it).
A QueueManager (not the PgQueuer application, which adds a scheduler) on one asyncpg
connection, PgQueuer's documented set-up, with three entrypoints:

* ``noop``  - an empty ``async def`` (PgQueuer's native handler; a sync def would be
  run on a thread).
* ``anap``  - awaits ``asyncio.sleep(0.1)``: the same workload as Offload's bench ``anap``.
* ``probe`` - pickup probe: sends ``"<payload> <time.time() at body start>"`` on the
  ``bench_probe`` channel (pg_notify over a second connection, opened on the first
  probe, so that the drains do not have it).
"""

import argparse
import asyncio
import time
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager


@asynccontextmanager
async def create():
    connection = await asyncpg.connect()
    qm = QueueManager(Queries(AsyncpgDriver(connection)))
    notify = []

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        pass

    @qm.entrypoint("anap")
    async def anap(job: Job) -> None:
        await asyncio.sleep(0.1)

    @qm.entrypoint("probe")
    async def probe(job: Job) -> None:
        started = time.time()
        if not notify:
            notify.append(await asyncpg.connect())
        await notify[0].execute("SELECT pg_notify('bench_probe', $1)",
                                f"{job.payload.decode()} {started!r}")

    try:
        yield qm
    finally:
        for conn in notify:
            await conn.close()
        if not connection.is_closed():
            await connection.close()


def main():
    from pgqueuer.adapters.cli.cli import asyncio_run  # uvloop when installed, as pgq run
    from pgqueuer.core import logconfig
    from pgqueuer.domain.types import QueueExecutionMode

    ap = argparse.ArgumentParser(description="pgq run pgqueuer_peer:create, without the CLI")
    ap.add_argument("--mode", choices=["continuous", "drain"], default="continuous")
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--dequeue-timeout", type=float, default=30.0)
    ap.add_argument("--max-concurrent-tasks", type=int, default=None)
    args = ap.parse_args()
    logconfig.setup_fancy_logger(logconfig.LogLevel.WARNING)
    asyncio_run(pgqueuer.run(create, batch_size=args.batch_size,
                             dequeue_timeout=timedelta(seconds=args.dequeue_timeout),
                             mode=QueueExecutionMode[args.mode],
                             max_concurrent_tasks=args.max_concurrent_tasks))


if __name__ == "__main__":
    main()
