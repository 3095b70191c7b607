"""Operator actions, shared by the dashboard and the admin: they call the same store
methods the rest of Offload uses, and write each one to the admin log.

    retry(user, TaskRow.objects.filter(pk__in=[7, 9]))
"""

import logging

from django.contrib.admin.models import CHANGE, LogEntry
from django.tasks import task_backends

from offload.models import TaskRow
from offload.results import decode_payload, resolve_task
from offload.store.base import now

logger = logging.getLogger("offload.dashboard")


def _record(user, rows, message):
    rows = list(rows)
    if rows:
        LogEntry.objects.log_actions(user_id=user.pk, queryset=rows, action_flag=CHANGE,
                                     change_message=message)
        logger.info("%s by %s: %s", message, user, ", ".join(str(r.pk) for r in rows))


def _by_backend(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row.backend, []).append(row.pk)
    return groups


def retry(user, rows):
    """FAILED tasks run again now; returns how many."""
    done = []
    for backend, ids in _by_backend(rows.filter(status="FAILED")).items():
        b = task_backends[backend]
        done += b.store.retry(backend=backend, ids=ids, now=now(), age_rate=b.opts.AGE_RATE)
    _record(user, TaskRow.objects.filter(pk__in=done), "Retried")
    return len(done)


def cancel(user, rows):
    """READY tasks become FAILED with a Cancelled error; returns how many."""
    done = []
    for backend, ids in _by_backend(rows.filter(status="READY")).items():
        done += task_backends[backend].store.cancel(backend=backend, ids=ids, now=now(),
                                                    reason=f"cancelled by {user}")
    _record(user, TaskRow.objects.filter(pk__in=done), "Cancelled")
    return len(done)


def re_enqueue(user, rows):
    """A new task with the same task, priority, queue and arguments; returns the new ids."""
    created = []
    for row in rows:
        args, kwargs, options = decode_payload(row.payload)
        task = resolve_task(row.task_path, priority=row.priority, queue_name=row.queue_name,
                            run_after=None, backend=row.backend, options=options)
        created.append(task.enqueue(*args, **kwargs).id)
    _record(user, rows, f"Enqueued again as {', '.join(created)}")
    return created


def set_paused(user, backend, queue, paused):
    task_backends[backend].store.pause(backend=backend, queue=queue, paused=paused, now=now())
    logger.info("%s %s queue %s/%s", user, "paused" if paused else "resumed", backend, queue)
