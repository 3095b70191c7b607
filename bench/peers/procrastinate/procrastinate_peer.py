"""Procrastinate app for the peer benchmark (``procrastinate --app=procrastinate_peer.app``).

PostgreSQL at 127.0.0.1:5432, database ``PEER_PG_NAME`` (default
``bench_peer_procrastinate``), through Procrastinate's psycopg connector; its
connection pool holds ``PEER_POOL_SIZE`` connections (default 4, psycopg_pool's and
so Procrastinate's default).

* ``noop``  - an empty ``async def``: Procrastinate runs sync tasks on threads and
  async ones on its event loop, so this is its cheapest task.
* ``anap``  - awaits ``asyncio.sleep(0.1)``: the same workload as Offload's bench ``anap``.
* ``probe`` - pickup probe: sends ``"<key> <time.time() at body start>"`` on the
  ``bench_probe`` channel (pg_notify through the app's pool).
"""

import asyncio
import os
import time

from procrastinate import App, PsycopgConnector

POOL_SIZE = int(os.environ.get("PEER_POOL_SIZE", "4"))
CONNINFO = ("host=127.0.0.1 port=5432 user=postgres "
            f"dbname={os.environ.get('PEER_PG_NAME', 'bench_peer_procrastinate')}")

app = App(connector=PsycopgConnector(conninfo=CONNINFO, min_size=POOL_SIZE, max_size=POOL_SIZE))


@app.task(name="noop")
async def noop():
    pass


@app.task(name="anap")
async def anap():
    await asyncio.sleep(0.1)


@app.task(name="probe")
async def probe(key):
    started = time.time()
    await app.connector.execute_query_async("SELECT pg_notify('bench_probe', %(payload)s)",
                                            payload=f"{key} {started!r}")
