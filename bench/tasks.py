"""Benchmark workloads."""

import time

from django.tasks import task


@task
def noop():
    return None


@task
def stamp():
    """Pickup probe: the time the task body starts (compared with the enqueue time)."""
    return time.time()
