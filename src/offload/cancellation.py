"""Cancelling a task: ``offload.cancel`` (and ``acancel``), and what a running task may
ask.

``offload.cancel(result)`` fails a task that has not started and asks the worker
running one to stop it (docs/flow-control.md#cancelling-a-task). A coroutine task gets ``CancelledError`` at
its next ``await``; a sync task cannot be interrupted from outside its thread, so it
may look, and stop by raising ``Cancelled``::

    from offload import cancellation

    @task
    def export_ledger(month):
        for chunk in chunks(month):
            cancellation.raise_if_requested()   # offload.exceptions.Cancelled
            write(chunk)

A task that does not stop within ``OPTIONS["CANCEL_GRACE"]`` seconds (5) of the request is failed
with ``Cancelled`` anyway and its worker process is replaced, as for a timeout.
"""

import contextvars
import threading

from asgiref.sync import sync_to_async

from offload.exceptions import Cancelled

__all__ = ["acancel", "cancel", "raise_if_requested", "requested"]

#: What ``cancel`` did: the task had not started and will not; it runs and was asked
#: to stop; it had finished already (left alone).
CANCELLED, STOPPING, FINISHED = "cancelled", "stopping", "finished"

#: Statuses of a task that has not started: READY, or BLOCKED (a workflow step).
WAITING = ("READY", "BLOCKED")

#: The id of the task this thread (or asyncio task) runs, set by the worker's runner.
current = contextvars.ContextVar("offload_current_task", default=None)
_requested = {}  # task id -> (Cancelled, its error entry): this process's tasks asked to stop
_lock = threading.Lock()


def request(task_id, error, entry):
    """The worker's side: task ``task_id`` of this process was asked to stop; ``error``
    (a ``Cancelled``) and its error ``entry`` are what its outcome records."""
    with _lock:
        _requested[task_id] = (error, entry)


def forget(task_id):
    with _lock:
        _requested.pop(task_id, None)


def stopped(task_id):
    """``(Cancelled, entry)`` if task ``task_id`` of this process was asked to stop."""
    return _requested.get(task_id)


def requested():
    """Whether the running task was asked to stop."""
    return stopped(current.get()) is not None


def raise_if_requested():
    """Raise ``offload.exceptions.Cancelled`` if the running task was asked to stop."""
    found = stopped(current.get())
    if found is not None:
        raise Cancelled(*found[0].args)


def cancel(result, *, reason=None, by=None, backend=None):
    """Cancel a task: ``result`` is a ``TaskResult`` or a result id (of ``backend``, by
    default "default"). A READY task (scheduled, retrying, waiting on a key or on the
    workflow steps it depends on) becomes
    FAILED with ``Cancelled`` now: ``"cancelled"``; a RUNNING one is asked to stop and
    its worker fails it with ``Cancelled``: ``"stopping"``; a finished one is left
    alone: ``"finished"``. The error says who (``by``) and why (``reason``). Raises
    ``TaskResultDoesNotExist`` for an unknown id."""
    from django.tasks import task_backends
    from django.tasks.exceptions import TaskResultDoesNotExist

    from offload.backend import OffloadBackend
    from offload.clock import now

    alias = backend or getattr(result, "backend", None) or "default"
    result_id = getattr(result, "id", result)
    tasks = task_backends[alias]
    if not isinstance(tasks, OffloadBackend):
        raise TypeError(f"offload.cancel: TASKS[{alias!r}] is a {type(tasks).__name__}, not an "
                        "Offload backend; only Offload's tasks can be cancelled this way.")
    text = _reason("cancelled", by, reason)
    rows = tasks._rows(result_id)  # raises TaskResultDoesNotExist for a malformed id
    for _ in range(3):  # a task may start, or go back to READY, between two statements
        status = rows.values_list("status", flat=True).first()
        if status is None:
            raise TaskResultDoesNotExist(result_id)
        ids = [int(result_id)]
        if status in WAITING and tasks.store.cancel(backend=alias, ids=ids, now=now(), reason=text):
            return CANCELLED
        if status == "RUNNING" and tasks.store.stop(backend=alias, ids=ids, reason=text):
            return STOPPING
        if status not in (*WAITING, "RUNNING"):
            return FINISHED
    raise RuntimeError(f"task {result_id} kept changing state while being cancelled; try again")


def _reason(what, by, reason):
    """The text of a Cancelled error: ``what``, who (``by``) and why (``reason``)."""
    return what + (f" by {by}" if by else "") + (f": {reason}" if reason else "")


def cancel_steps(workflow, *, reason=None, by=None):
    """Cancel a workflow's steps that have not finished (``WorkflowResult.cancel``):
    those that wait (READY, BLOCKED) fail with ``Cancelled`` in one statement, the
    running ones are asked to stop. Returns how many steps it touched."""
    from django.tasks import task_backends

    from offload.clock import now
    from offload.models import TaskRow

    tasks = task_backends[workflow.backend]
    store = tasks.store
    text = _reason("cancelled with its workflow", by, reason)
    steps = TaskRow.objects.using(store.db_alias).filter(workflow_id=int(workflow.id))
    touched = 0
    for _ in range(3):  # a step may start between reading and cancelling
        waiting = list(steps.filter(status__in=WAITING).values_list("id", flat=True))
        running = list(steps.filter(status="RUNNING", cancel_error__isnull=True)
                       .values_list("id", flat=True))
        if not waiting and not running:
            break
        if waiting:
            touched += len(store.cancel(backend=workflow.backend, ids=waiting, now=now(),
                                        reason=text))
        if running:
            touched += len(store.stop(backend=workflow.backend, ids=running, reason=text))
    return touched


async def acancel(result, *, reason=None, by=None, backend=None):
    """``cancel`` for async code."""
    return await sync_to_async(cancel)(result, reason=reason, by=by, backend=backend)
