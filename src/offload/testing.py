"""Helpers for testing code that enqueues Offload tasks.

``run_until_empty()`` runs every runnable task in the current thread, on the current
database connection, so it works inside a ``TestCase`` transaction. Example::

    send_welcome.enqueue(user.pk)
    assert run_until_empty() == 1
"""

import os

from django.tasks import task_backends

from offload.worker.loop import Loop

__all__ = ["run_until_empty"]


def run_until_empty(backend="default", *, queues=None, max_tasks=None):
    """Run runnable tasks of ``backend`` one by one; return how many ran."""
    tasks_backend = task_backends[backend]
    loop = Loop(tasks_backend, queues=queues or tasks_backend.queues, threads=1,
                worker_id=f"inline-{os.getpid()}")
    return loop.run_inline(max_tasks=max_tasks)
