"""Runs one claimed task and says what happened, as an ``Outcome`` for the store.

Whatever the task does — raise, return something that is not JSON, point at a path
that no longer imports, carry a corrupt payload — the runner turns it into a FAILED
(or retried) outcome; it never lets it reach the loop. Example::

    outcome, result = Runner(backend, worker_id="host-1").run(claimed)
"""

import asyncio
import json
import logging
import re
import traceback
from contextlib import ExitStack, contextmanager
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db import DatabaseError, InterfaceError, close_old_connections, connections, transaction
from django.tasks import TaskContext, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils.json import normalize_json

from offload import cancellation
from offload.ageing import age_key
from offload.clock import now
from offload.exceptions import AtomicScopeError, LeaseLost, ResultNotSerializable
from offload.results import build_result, decode_errors, decode_payload, error_entries, error_entry, resolve_task
from offload.scheduling.backoff import retry_delay
from offload.store import Outcome

logger = logging.getLogger("offload.worker")


def send_finished(sender, result, exception=None):
    """Send ``task_finished`` for a final outcome already recorded. A FAILED task's signal
    is sent while its exception is being handled, as Django's own backends do, so
    ``sys.exc_info()`` in a receiver (Django's logging receiver, error monitoring) sees
    it. A receiver's error is logged (send_robust), never raised here."""
    if exception is None:
        task_finished.send_robust(sender, task_result=result)
        return
    try:
        raise exception
    except BaseException:  # noqa: B036 — re-raised only to be the exception being handled
        task_finished.send_robust(sender, task_result=result)


async def tidy_connections():
    """``close_old_connections`` on the thread Django's async ORM uses (as a request's
    end does for an async view): connections past ``CONN_MAX_AGE`` or broken close."""
    await sync_to_async(close_old_connections)()


def _arguments(task, result):
    """The positional arguments of a task's call: its context first if it takes one."""
    if task.takes_context:
        return (TaskContext(task_result=result), *result.args)
    return result.args


class _NotPrepared(Exception):
    """The database failed while a step's received results were read (prepare)."""

    def __init__(self, task):
        super().__init__(task.module_path)
        self.task = task


class _Undone(Exception):
    """Rolls an atomic task's transaction back, carrying the outcome to record instead."""

    def __init__(self, outcome):
        super().__init__(outcome.status)
        self.outcome = outcome


_WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|MERGE|TRUNCATE|CREATE|ALTER|DROP)\b"
                     r"|^\s*WITH\b.*\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE | re.DOTALL)


@contextmanager
def only_writes_to(alias, path):
    """While an atomic task runs on this thread, a write through any other database
    alias raises ``AtomicScopeError``: it would happen outside the task's transaction,
    at least once, and the guarantee would silently not hold for it."""

    def refuse(execute, sql, params, many, context):
        if _WRITES.match(sql):
            db = context["connection"].alias
            raise AtomicScopeError(
                f"{path} is atomic=True but wrote through database {db!r} ({sql[:60]}...), "
                f"outside its transaction on the task database {alias!r}: route the writes "
                f"to {alias!r}, or leave this task at-least-once (atomic=False) and make it "
                "idempotent.")
        return execute(sql, params, many, context)

    with ExitStack() as stack:
        for other in connections.all(initialized_only=False):
            if other.alias != alias:
                stack.enter_context(other.execute_wrapper(refuse))
        yield


def _entry_for(exc):
    cls = type(exc)
    return error_entry(f"{cls.__module__}.{cls.__qualname__}", "".join(traceback.format_exception(exc)))


class Runner:
    def __init__(self, backend, worker_id, *, cleanup=True):
        self.backend = backend
        # Like a request, a task ends by closing connections it broke or left in a
        # transaction. Off for in-process use inside a test's transaction.
        self.cleanup = cleanup
        self.opts = backend.opts
        self.worker_id = worker_id
        self.sender = type(backend)

    def option(self, task, name, default_name):
        value = getattr(task, name, None)
        return getattr(self.opts, default_name) if value is None else value

    def prepare(self, claimed):
        """Resolve the task and build its RUNNING TaskResult, or raise. A workflow step
        that receives results gets them before its own arguments, read now (its
        dependencies succeeded before it was released), so its TaskResult's args show
        what it ran with."""
        args, kwargs, options, receives = decode_payload(claimed.payload)
        task = resolve_task(
            claimed.task_path, priority=claimed.priority, queue_name=claimed.queue_name,
            run_after=claimed.run_after, backend=self.backend.alias, options=options,
        )
        if receives:
            try:
                args = self.backend.store.with_received(claimed.id, receives, args)
            except (DatabaseError, InterfaceError) as exc:  # not the row's fault: retried
                raise _NotPrepared(task) from exc
        result = build_result(
            task, id=claimed.id, status=TaskResultStatus.RUNNING,
            enqueued_at=claimed.enqueued_at, started_at=claimed.started_at,
            finished_at=None, last_attempted_at=claimed.claimed_at, args=args,
            kwargs=kwargs, backend=self.backend.alias,
            errors=decode_errors(claimed.errors), worker_ids=claimed.worker_ids,
        )
        return task, result

    def unprepared(self, claimed, exc):
        """The outcome of a task ``prepare`` raised for: an unknown path or a corrupt
        payload fails it for good; the database failing while it read a step's
        received results is an attempt, retried as such."""
        if isinstance(exc, _NotPrepared):
            return self.failed(claimed, exc.__cause__, task=exc.task)
        return self.failed(claimed, exc, retry=False)

    def timeout_of(self, task):
        """The task's time limit; an atomic task always has one (``ATOMIC_TIMEOUT``)."""
        timeout = self.option(task, "timeout", "TIMEOUT")
        if timeout is None and getattr(task, "atomic", None):
            return self.opts.ATOMIC_TIMEOUT
        return timeout

    def run(self, claimed, prepared=None):
        """Run ``claimed``; return ``(outcome, result)``. ``result`` is None if it never started."""
        try:
            task, result = prepared or self.prepare(claimed)
        except Exception as exc:
            return self.unprepared(claimed, exc), None
        self.started(result)
        running = cancellation.current.set(claimed.id)
        try:
            if getattr(task, "atomic", None):
                return self.atomic(claimed, task, result), result
            value = task.call(*_arguments(task, result), **result.kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036  (a task's SystemExit must not stop the server)
            return self.failed(claimed, exc, task=task, result=result,
                               retry=not isinstance(exc, AtomicScopeError)), result
        finally:
            cancellation.current.reset(running)
            if self.cleanup:
                close_old_connections()
        return self.succeeded(claimed, value, result), result

    def atomic(self, claimed, task, result):
        """Run an ``atomic=True`` task: its body and the record of its success in one
        transaction on the task database, the record guarded by the lease token. If the
        guard matches nothing (the lease was lost: rescued, cancelled, fenced), the
        whole transaction rolls back, the task's writes with it; if the body raises, its
        writes roll back and the failure is recorded on its own (by the caller). Writes
        through any other database raise ``AtomicScopeError`` (``only_writes_to``).
        Returns the outcome, ``recorded`` when it was written here."""
        store = self.backend.store
        try:
            with only_writes_to(store.db_alias, claimed.task_path), \
                    transaction.atomic(using=store.db_alias):
                if not store.hold(claimed):
                    raise LeaseLost(f"task id={claimed.id}: its lease was lost before it started")
                value = task.call(*_arguments(task, result), **result.kwargs)
                outcome = self.succeeded(claimed, value, result)
                if outcome.status != TaskResultStatus.SUCCESSFUL:  # a value JSON cannot hold
                    raise _Undone(outcome)
                if not store.record_atomic(outcome, worker=self.worker_id):
                    raise LeaseLost(f"task id={claimed.id}: its lease was lost while it ran")
        except _Undone as undone:  # rolled back; the failure is recorded by the loop
            return undone.outcome
        except LeaseLost as exc:  # rolled back; the loop's record of it is refused too
            logger.warning("%s: %s; its writes were rolled back", self.worker_id, exc)
            return Outcome(claimed.id, claimed.token, TaskResultStatus.FAILED, now(),
                           errors=json.dumps(error_entries(claimed.errors) + [_entry_for(exc)]),
                           claim=claimed)
        outcome.recorded = True
        return outcome

    def started(self, result):
        """Send ``task_started``. A receiver's error is logged by send_robust (logger
        django.dispatch); it never costs the task its thread, its lease or a run."""
        task_started.send_robust(self.sender, task_result=result)

    async def arun(self, claimed, prepared):
        """``run`` for a coroutine task, awaited on the asyncio executor's event loop.
        The loop sent ``task_started`` already, from its own thread (no receiver runs
        on the event loop, and no thread hop per task). The executor's
        ``CancelledError`` propagates.

        Connections: Django's async ORM runs on one thread (``sync_to_async``), whose
        connections are cleaned up where they were made: after a failed task at once
        (it may have broken one), otherwise by the executor's sweep every second
        (``tidy_connections``) rather than with a thread hop per task."""
        task, result = prepared
        cancellation.current.set(claimed.id)  # in this asyncio task's own context
        try:
            value = await task.acall(*_arguments(task, result), **result.kwargs)
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:  # noqa: B036  (as in run)
            if self.cleanup:
                await tidy_connections()
            return self.failed(claimed, exc, task=task, result=result), result
        return self.succeeded(claimed, value, result), result

    def succeeded(self, claimed, value, result):
        """The outcome of a task that returned ``value``: SUCCESSFUL, or FAILED if the
        value cannot be stored as JSON."""
        try:
            encoded = json.dumps(normalize_json(value), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            bad = ResultNotSerializable(
                f"{claimed.task_path} returned a {type(value).__name__}, which cannot be "
                f"stored as JSON ({exc}). Return str, int, float, bool, None, list or dict."
            )
            return self.failed(claimed, bad, retry=False, result=result)
        return Outcome(claimed.id, claimed.token, TaskResultStatus.SUCCESSFUL, now(),
                       return_value=encoded, claim=claimed)

    def failed(self, claimed, exc, *, retry=True, task=None, result=None, entry=None):
        """The outcome of a failed attempt: READY again after a backoff, or FAILED. An
        attempt that ends with an error after the task was asked to stop
        (``offload.cancellation``) records the ``Cancelled`` and is not retried."""
        if (stop := cancellation.stopped(claimed.id)) is not None:
            exc, entry, retry = stop[0], stop[1], False
        errors = error_entries(claimed.errors) if result is None else [
            {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
            for e in result.errors
        ]
        errors.append(entry or _entry_for(exc))
        at = now()
        max_attempts = self.option(task, "max_attempts", "MAX_ATTEMPTS") if task else 1
        if retry and task is not None and len(errors) < max_attempts:
            delay = retry_delay(
                attempt=len(errors),
                base=self.option(task, "retry_backoff", "RETRY_BACKOFF"),
                cap=self.option(task, "retry_backoff_max", "RETRY_BACKOFF_MAX"),
                jitter=self.option(task, "retry_jitter", "RETRY_JITTER"),
            )
            # Its traceback here: no task_finished (nor Django's log line) for an attempt.
            logger.warning("Task id=%s path=%s failed (attempt %d of %d); retrying in %.1fs",
                           claimed.id, claimed.task_path, len(errors), max_attempts, delay,
                           exc_info=exc)
            status, finished, available = TaskResultStatus.READY, None, at + timedelta(seconds=delay)
        else:
            status, finished, available = TaskResultStatus.FAILED, at, None
        if result is not None:
            result.errors.append(TaskError(**errors[-1]))
        return Outcome(claimed.id, claimed.token, status, finished, available_at=available,
                       errors=json.dumps(errors), exception=exc, claim=claimed,
                       age_key=available and age_key(claimed.priority, available, self.opts.AGE_RATE))

    def broken(self, claimed, exc):
        """FAILED, built from the claim alone: the last resort when running or failing a
        task raised (a row whose options no code expects, a bug of ours). Nothing a row
        contains may cost a thread."""
        errors = error_entries(claimed.errors) + [_entry_for(exc)]
        return Outcome(claimed.id, claimed.token, TaskResultStatus.FAILED, now(),
                       errors=json.dumps(errors), exception=exc, claim=claimed)
