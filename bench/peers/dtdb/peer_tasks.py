"""Tasks used by dtdb_bench.py (no-op, pickup probe) and dtdb_priority.py (20 ms work)."""

import time

from django.tasks import task


@task
def noop():
    return None


@task
def probe():
    """Return the wall-clock time at which the task body started running."""
    return time.time()


@task
def low_work():
    """Priority benchmark backlog task: 20 ms of (sleeping) work."""
    time.sleep(0.02)


@task
def urgent_work():
    """Priority benchmark urgent task: the same 20 ms; returns when its body started."""
    started = time.time()
    time.sleep(0.02)
    return started
