"""Huey app for the peer benchmark: Redis db 14 (``PEER_REDIS_URL``), results kept.

Both tasks return ``time.time()`` taken in their body: Huey keeps no timestamps of
its own and does not store a ``None`` result, so the returned value is what lets the
harness verify every task (one result per task id in Huey's result hash) and time
the drain.
"""

import os
import time

from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/14"),
                 results=True)


@huey.task()
def noop():
    return time.time()


@huey.task()
def probe():
    """Return the wall-clock time at which the task body started running."""
    return time.time()
