"""Tasks used by dtdb_bench.py: a no-op and a pickup-latency probe."""

import time

from django.tasks import task


@task
def noop():
    return None


@task
def probe():
    """Return the wall-clock time at which the task body started running."""
    return time.time()
