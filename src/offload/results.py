"""Turning stored rows back into ``django.tasks`` objects: the Task and its TaskResult.

Also the codecs of a row's payload and errors. Used by the backend (``get_result``),
the store, the dashboard and the worker (the TaskResult a running task
sees in its ``TaskContext`` and in the signals). Example::

    task = resolve_task("myapp.tasks.send_email", priority=10, queue_name="emails",
                        run_after=None, backend="default")
"""

import dataclasses
import json
from functools import lru_cache

from django.tasks import Task, TaskResult
from django.tasks.base import TaskError
from django.utils.module_loading import import_string

from offload.exceptions import CorruptPayload, TaskNotFound
from offload.options import OPTION_NAMES


@lru_cache(maxsize=2048)
def import_task(path):
    try:
        obj = import_string(path)
    except ImportError as exc:
        raise TaskNotFound(
            f"Task {path!r} cannot be imported ({exc}). Was it renamed or removed while "
            "tasks were queued? Keep the old name importable until its queue is drained."
        ) from None
    if not isinstance(obj, Task):
        raise TaskNotFound(
            f"{path!r} is a {type(obj).__name__}, not a Task: decorate it with @task."
        )
    return obj


def resolve_task(path, *, priority, queue_name, run_after, backend, options=None):
    """The Task as it was enqueued: the imported definition with the row's overrides."""
    task = import_task(path)
    if options or (task.priority, task.queue_name, task.run_after, task.backend) != (
        priority, queue_name, run_after, backend
    ):
        task = dataclasses.replace(
            task, priority=priority, queue_name=queue_name, run_after=run_after,
            backend=backend, **(options or {}),
        )
    return task


def error_entry(exception_class_path, text):
    """One entry of a row's ``errors`` list (the fields of ``TaskError``)."""
    return {"exception_class_path": exception_class_path, "traceback": text}


CANCELLED = "offload.exceptions.Cancelled"

#: A workflow step's status while it waits for the steps it depends on: its
#: TaskResult says READY; no claim index holds it (docs/workflows.md).
BLOCKED = "BLOCKED"


def cancelled_entry(reason):
    """The error entry of a cancelled task; ``reason`` says who and why."""
    return error_entry(CANCELLED, f"{CANCELLED}: {reason}\n")


def decode_payload(text):
    """``(args, kwargs, options, receives)`` from a stored payload, or CorruptPayload.
    ``receives``: what a workflow step gets before its own arguments ("one": the
    result of the step it follows, "all": the list of its dependencies' results), or
    None (docs/workflows.md)."""
    try:
        payload = json.loads(text)
        args, kwargs = payload["args"], payload["kwargs"]
        options = payload.get("options")
        receives = payload.get("receives")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError("args must be a list and kwargs an object")
        if receives not in RECEIVES:
            raise TypeError(f"receives is {receives!r}, not one of {RECEIVES}")
        if options is not None and not (isinstance(options, dict) and set(options) <= set(OPTION_NAMES)):
            raise TypeError(f"unknown options {options!r}")
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptPayload(
            f"The stored arguments are not a valid Offload payload ({exc}); expected "
            '{"args": [...], "kwargs": {...}}. The row was changed outside Offload.'
        ) from None
    return args, kwargs, options, receives


#: What a workflow step may receive (decode_payload).
RECEIVES = (None, "one", "all")


def _is_entry(value):
    return (isinstance(value, dict) and set(value) == {"exception_class_path", "traceback"}
            and all(isinstance(v, str) for v in value.values()))


def error_entries(text):
    """A row's stored ``errors`` as a list of error entries; never raises.

    A damaged list (not JSON, not a list of entries: a row changed outside Offload)
    becomes one entry that says so and quotes its beginning, so the task's next error
    can still be recorded after it."""
    if not text or text == "[]":  # most rows: no error yet
        return []
    try:
        entries = json.loads(text)
    except ValueError as exc:
        problem = f"are not JSON ({exc})"
    else:
        if isinstance(entries, list) and all(map(_is_entry, entries)):
            return entries
        problem = f"are a JSON {type(entries).__name__}, not a list of errors"
    return [error_entry(
        "offload.exceptions.CorruptPayload",
        f"offload.exceptions.CorruptPayload: the task's stored errors {problem}; the row was "
        f"changed outside Offload. They began: {str(text)[:200]!r}\n",
    )]


def decode_errors(text):
    return [TaskError(**e) for e in error_entries(text)]


def build_result(task, *, id, status, enqueued_at, started_at, finished_at,
                 last_attempted_at, args, kwargs, backend, errors, worker_ids,
                 return_value=None):
    result = TaskResult(
        task=task, id=str(id), status=status, enqueued_at=enqueued_at,
        started_at=started_at, finished_at=finished_at,
        last_attempted_at=last_attempted_at, args=args, kwargs=kwargs, backend=backend,
        errors=errors, worker_ids=worker_ids.split(",") if worker_ids else [],
    )
    if return_value is not None:
        object.__setattr__(result, "_return_value", json.loads(return_value))
    return result
