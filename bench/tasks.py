"""Benchmark workloads."""

import asyncio
import time

from django.tasks import task


@task
def noop():
    return None


@task
def stamp():
    """Pickup probe: the time the task body starts (compared with the enqueue time)."""
    return time.time()


@task
def sleep20():
    """A ~20 ms piece of bulk work."""
    time.sleep(0.02)


@task
def stamp_sleep20():
    """An urgent ~20 ms task that reports when it started."""
    started = time.time()
    time.sleep(0.02)
    return started


@task
async def anap():
    """I/O-bound work: a coroutine that awaits 100 ms."""
    await asyncio.sleep(0.1)


@task
def sleep5():
    """A ~5 ms piece of a tenant's bulk work."""
    time.sleep(0.005)


@task
def stamp_sleep5():
    """Another tenant's ~5 ms task that reports when it started."""
    started = time.time()
    time.sleep(0.005)
    return started


@task
def bump(row):
    """Adds 1 to one row of bench_counter (made by bench/atomic.py): a task whose only
    effect is one database write. Enqueued with ``.using(atomic=True)`` or not."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE bench_counter SET value = value + 1 WHERE id = %s", [row])


@task
def collect(values):
    """A chord's callback (bench/workflow.py): how many results it received."""
    return len(values)
