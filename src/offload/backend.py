"""``OffloadBackend``: the ``django.tasks`` backend that stores tasks in the database.

Enqueue writes one row (or one statement per batch of rows) through the connection of
``OPTIONS["DATABASE"]``, inside the caller's transaction when there is one. The async
server (``manage.py offload worker``) claims and runs them. Example::

    TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                         "QUEUES": ["default", "emails"]}}

    @task(priority=50, queue_name="emails", max_attempts=5, timeout=30)
    def send_welcome(user_id): ...
"""

import dataclasses
import inspect
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import Task, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from offload.conf import Options, parse_burst, parse_duration, parse_rate
from offload.exceptions import ArgumentsNotSerializable, InvalidTaskOptions, InvalidWorkflow, PayloadTooLarge
from offload.options import OPTION_NAMES
from offload.results import BLOCKED, build_result, decode_errors, decode_payload, import_task, resolve_task
from offload.store import get_store

#: Tasks per INSERT statement in bulk_enqueue.
BULK_BATCH = 5000
#: The largest concurrency_limit (a limit above any real cluster's slots is no limit).
MAX_CONCURRENCY = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadTask(Task):
    """A ``django.tasks.Task`` with Offload's per-task options.

    Set them as extra keyword arguments of ``@task`` or with ``.using()``; ``None``
    means the backend's default from ``OPTIONS``.
    """

    #: Attempts before the task is FAILED (1 = no retries).
    max_attempts: int | None = None
    #: Seconds before the first retry; doubles each retry, with jitter.
    retry_backoff: float | None = None
    #: Longest wait between retries, in seconds.
    retry_backoff_max: float | None = None
    #: Spread retries randomly over [delay/2, delay].
    retry_jitter: bool | None = None
    #: Hard limit in seconds; a task over it is failed and its process replaced.
    timeout: float | None = None
    #: While a task with this key is READY or RUNNING, enqueueing another one with the
    #: same key returns the pending task instead (set it with ``.using(unique_key=...)``).
    unique_key: str | None = None
    #: Flow control (docs/flow-control.md): at most this many tasks holding the same
    #: ``concurrency_key`` run at once, on every server together; the others wait READY.
    concurrency_limit: int | None = None
    #: The key: a str, or a callable computing it from the task's arguments at enqueue
    #: (``concurrency_key=lambda application_id, **_: f"application:{application_id}"``).
    #: Tasks of any kind share a key's slots. With a limit and no key, the key is the
    #: task's path (at most N of this task at once); with a key and no limit, the limit is 1.
    concurrency_key: str | Callable | None = None
    #: At most this many of the task start per period, on every server together:
    #: ``"20/s"``, ``"100/m"``, ``"5/h"``, ``"1/10s"`` (a token bucket; the others wait
    #: READY for their turn, see docs/flow-control.md#rate-limits).
    rate_limit: str | None = None
    #: How many may start at once after a pause (the bucket's size; 1: evenly spaced).
    rate_burst: int | None = None
    #: The bucket: a str, or a callable of the task's arguments; tasks of any kind with
    #: the same key share it. Default: the task's path.
    rate_limit_key: str | Callable | None = None
    #: Fair sharing (docs/flow-control.md#fair-sharing): within one priority, claims take
    #: turns between fair keys (a str, or a callable of the task's arguments), so one
    #: key's burst does not hold back another key's tasks.
    fair_key: str | Callable | None = None
    #: Exactly-once effects on the task database (docs/reliability.md#exactly-once-effects):
    #: the body runs in a transaction on the task database that also records its
    #: success, under the lease guard; a lost lease or a crash rolls its writes back.
    atomic: bool | None = None

    def using(self, *, max_attempts=None, retry_backoff=None, retry_backoff_max=None,
              retry_jitter=None, timeout=None, unique_key=None, concurrency_limit=None,
              concurrency_key=None, rate_limit=None, rate_burst=None, rate_limit_key=None,
              fair_key=None, atomic=None, **changes):
        task = Task.using(self, **changes)
        extra = {k: v for k, v in {
            "max_attempts": max_attempts, "retry_backoff": retry_backoff,
            "retry_backoff_max": retry_backoff_max, "retry_jitter": retry_jitter,
            "timeout": timeout, "unique_key": unique_key,
            "concurrency_limit": concurrency_limit, "concurrency_key": concurrency_key,
            "rate_limit": rate_limit, "rate_burst": rate_burst,
            "rate_limit_key": rate_limit_key, "fair_key": fair_key, "atomic": atomic,
        }.items() if v is not None}
        return dataclasses.replace(task, **extra) if extra else task

    def _key(self, name, args, kwargs):
        """The option ``name`` of one enqueue: its str, or what its callable returns."""
        key = getattr(self, name)
        if not callable(key):
            return key
        try:
            key = key(*args, **kwargs)
        except Exception as exc:
            raise InvalidTaskOptions(
                f"Cannot enqueue {self.module_path}: its {name} callable raised "
                f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(key, str):
            raise InvalidTaskOptions(
                f"Cannot enqueue {self.module_path}: its {name} callable returned "
                f"{key!r:.80}, not a str; return the key, such as f\"application:{{id}}\".")
        _check_text(f"{name} (computed)", key, 255)
        return key

    def concurrency(self, args, kwargs):
        """``(key, limit)`` of one enqueue of this task, or ``(None, None)``."""
        if self.concurrency_key is None and self.concurrency_limit is None:
            return None, None
        key, limit = self._key("concurrency_key", args, kwargs), self.concurrency_limit
        return (self.module_path if key is None else key), (1 if limit is None else limit)

    def rate(self, args, kwargs):
        """``(bucket, seconds per task, burst)`` of one enqueue of this task's own rate
        limit, or None."""
        if self.rate_limit is None:
            return None
        key = self._key("rate_limit_key", args, kwargs)
        return (self.module_path if key is None else key), parse_rate(self.rate_limit), \
            1 if self.rate_burst is None else self.rate_burst


def _check_atomic(task):
    """``atomic=True`` holds only for a sync function run on a worker's thread: refuse
    the rest at definition, never downgrade silently."""
    if type(task.atomic) is not bool:
        raise InvalidTaskOptions(f"{task.module_path}: atomic={task.atomic!r}: use True or False.")
    if task.atomic and inspect.iscoroutinefunction(task.func):
        raise InvalidTaskOptions(
            f"{task.module_path}: atomic=True needs a plain (sync) function. An async task's "
            "database calls run on other threads (sync_to_async), outside the transaction "
            "that records its outcome; make it a def, or leave it at-least-once.")


#: Deepest nesting of lists and dicts inside one argument. Deeper structures are
#: refused at enqueue (JSON encoders and decoders recurse, and so does the check).
MAX_DEPTH = 100
#: Ints of at most this many bits have fewer digits than any int-to-str limit Python
#: allows (640 at least), so only larger ones need the slower check.
_SAFE_INT_BITS = 2000


def _unstorable(value, depth):
    """What keeps ``value`` from being stored as JSON faithfully: None, or ``(where,
    culprit, problem)``; ``where`` lists the path's steps innermost first, ``problem``
    is None for a value of the wrong type. Paths are built only on failure."""
    if isinstance(value, str) or value is None:
        return None
    if isinstance(value, int):  # bool too
        if value.bit_length() <= _SAFE_INT_BITS:
            return None
        try:
            str(value)
        except ValueError:
            limit = sys.get_int_max_str_digits()
            return [], value, (
                f"an int of more than {limit:,} digits, more than Python turns into text "
                "(sys.get_int_max_str_digits()); pass str(value) and int() it in the task")
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], value, None)
    if isinstance(value, (list, tuple, dict)) and depth > MAX_DEPTH:
        return [], value, (
            f"nested more than {MAX_DEPTH} levels deep (a list or dict inside a list or dict "
            "...); flatten it, or store it and pass a reference such as a primary key")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if found := _unstorable(item, depth + 1):
                found[0].append(f"[{i}]")
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return [f" key {key!r:.60}"], key, None
            if found := _unstorable(item, depth + 1):
                found[0].append(f"[{key!r}]")
                return found
        return None
    return [], value, None


def _a(value):
    """``value``'s type name with its indefinite article: "a Decimal", "an object",
    "a UUID" (an initial U said "you" takes "a")."""
    name = type(value).__name__
    vowel = name[:1].lower() in "aeiou" and not name.lower().startswith(("uu", "uni", "use", "usu", "eu"))
    return f"{'an' if vowel else 'a'} {name}"


def _bad_value(value, path):
    """The first ``(path, culprit, problem)`` inside ``value`` that JSON cannot carry
    faithfully (see ``_unstorable``), or None."""
    if found := _unstorable(value, 0):
        where, culprit, problem = found
        return path + "".join(reversed(where)), culprit, problem
    return None


def option_overrides(task):
    """Options set with ``.using()`` that differ from the task's definition (stored per row)."""
    if not isinstance(task, OffloadTask):
        return None
    defined = import_task(task.module_path)
    changed = {n: getattr(task, n) for n in OPTION_NAMES if getattr(task, n) != getattr(defined, n, None)}
    return changed or None


_UNSET = object()
#: Compact JSON, ASCII (one byte a character); one encoder for every payload (json.dumps
#: with options builds a new one per call).
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def encode_payload(task, args, kwargs, *, max_bytes=None, options=_UNSET, receives=None):
    """JSON text of the arguments, or ArgumentsNotSerializable naming the culprit
    (PayloadTooLarge when the text is longer than ``max_bytes``). ``options``: the
    task's ``option_overrides``, when the caller worked them out once for many calls;
    ``receives``: a workflow step's (see decode_payload)."""
    if type(kwargs) is not dict:
        kwargs = dict(kwargs)
    found = _bad_value(args, "args") or _bad_value(kwargs, "kwargs")
    if found:
        path, value, problem = found
        if len(path) > 80:
            path = path[:80] + "…"
        if problem:
            raise ArgumentsNotSerializable(f"Cannot enqueue {task.module_path}: {path} is {problem}.")
        raise ArgumentsNotSerializable(
            f"Cannot enqueue {task.module_path}: {path} is {_a(value)} "
            f"({value!r:.60}), which cannot be stored as JSON. Task arguments must be str, "
            "int, finite float, bool, None, list or dict with str keys: pass a primary key "
            "instead of a model instance, str(value) for a Decimal or UUID, "
            "value.isoformat() for a datetime."
        )
    payload = {"args": args, "kwargs": kwargs}
    if options is _UNSET:
        options = option_overrides(task)
    if options:
        payload["options"] = options
    if receives:
        payload["receives"] = receives
    text = _to_json(payload)
    if max_bytes is not None and len(text) > max_bytes:
        raise PayloadTooLarge(
            f"Cannot enqueue {task.module_path}: its arguments are {len(text):,} bytes as JSON, "
            f"over the limit of {max_bytes:,} (OPTIONS['MAX_PAYLOAD_BYTES'] of backend "
            f"{task.backend!r}). Pass a reference instead of the data, such as a primary key "
            "or a file path, and load it in the task; or raise the limit (None: no limit)."
        )
    return text


def _check_text(name, value, max_length):
    """InvalidTaskOptions unless ``value`` is a non-empty str of at most ``max_length``
    characters without NUL (PostgreSQL's text cannot hold one)."""
    if isinstance(value, str) and 0 < len(value) <= max_length and "\x00" not in value:
        return
    if not isinstance(value, str):
        problem = f"is {_a(value)}"
    elif not value:
        problem = "is empty"
    elif len(value) > max_length:
        problem = f"is {len(value):,} characters long"
    else:
        problem = "contains a NUL character (\\x00)"
    raise InvalidTaskOptions(
        f"{name}={value!r:.80}: {problem}; use a non-empty string of at most {max_length} "
        "characters without NUL characters."
    )


class OffloadBackend(BaseTaskBackend):
    task_class = OffloadTask

    #: Tasks may be deferred with ``.using(run_after=...)``.
    supports_defer = True
    #: Coroutine functions may be tasks; the worker runs them to completion.
    supports_async_task = True
    #: Results are readable from any process with ``get_result``.
    supports_get_result = True
    #: Higher ``priority`` runs first.
    supports_priority = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        self.params = params
        # A bad OPTIONS is reported by check() (offload.E009) with every other mistake,
        # and raised by the first use of the backend: constructing never fails.
        try:
            self._opts, self.config_error = Options.from_params(alias, self.options), None
        except ImproperlyConfigured as exc:
            self._opts, self.config_error = None, exc

    @property
    def opts(self):
        if self._opts is None:
            raise ImproperlyConfigured(str(self.config_error))
        return self._opts

    def check(self, **kwargs):
        from offload.checks import backend_errors

        return backend_errors(self, self.params, self.config_error)

    @cached_property
    def store(self):
        if not apps.is_installed("offload"):
            from offload.checks import MISSING_APP_HINT

            raise ImproperlyConfigured(f"TASKS[{self.alias!r}] uses Offload, but 'offload' is not "
                                       f"in INSTALLED_APPS. {MISSING_APP_HINT}")
        return get_store(self.opts.DATABASE)

    def validate_task(self, task):
        super().validate_task(task)
        # The table's limits, checked here so that both engines give the same answer
        # (SQLite would store what PostgreSQL refuses).
        _check_text("queue_name", task.queue_name, 100)
        if not isinstance(task, OffloadTask):
            return
        if task.unique_key is not None:
            _check_text("unique_key", task.unique_key, 255)
        if task.concurrency_key is not None and not callable(task.concurrency_key):
            _check_text("concurrency_key", task.concurrency_key, 255)
        limit = task.concurrency_limit
        if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_CONCURRENCY):
            raise InvalidTaskOptions(
                f"concurrency_limit={limit!r}: use a whole number from 1 to {MAX_CONCURRENCY:,} "
                "(how many tasks holding one concurrency key may run at once).")
        for name in ("rate_limit_key", "fair_key"):
            if (value := getattr(task, name)) is not None and not callable(value):
                _check_text(name, value, 255)
        try:
            if task.rate_limit is not None:
                parse_rate(task.rate_limit)
            if task.rate_burst is not None:
                parse_burst(task.rate_burst)
        except ValueError as exc:
            raise InvalidTaskOptions(str(exc)) from None
        if task.atomic is not None:
            _check_atomic(task)
        if task.rate_limit is None and (task.rate_burst, task.rate_limit_key) != (None, None):
            raise InvalidTaskOptions(
                f"{task.module_path}: rate_burst and rate_limit_key need a rate_limit "
                "(such as rate_limit='20/s').")
        if task.max_attempts is not None and (
            not isinstance(task.max_attempts, int) or task.max_attempts < 1
        ):
            raise InvalidTaskOptions(
                f"max_attempts={task.max_attempts!r}: use a whole number >= 1 (1 = no retries)."
            )
        for name in ("retry_backoff", "retry_backoff_max", "timeout"):
            value = getattr(task, name)
            if value is None:
                continue
            try:
                seconds = parse_duration(value, name=name)
            except ValueError as exc:
                raise InvalidTaskOptions(str(exc)) from None
            if seconds < 0 or (name == "timeout" and seconds == 0):
                raise InvalidTaskOptions(f"{name}={value!r} must be a positive duration.")
            if seconds != value:
                object.__setattr__(task, name, seconds)

    # -- enqueue ---------------------------------------------------------------

    def _row(self, task, args, kwargs, options=_UNSET, receives=None):
        payload = encode_payload(task, args, kwargs, max_bytes=self.opts.MAX_PAYLOAD_BYTES,
                                 options=options, receives=receives)
        if isinstance(task, OffloadTask):
            rate = task.rate(args, kwargs) or self._queue_rate(task.queue_name)
            return (task.queue_name, task.priority, task.module_path, payload, task.run_after,
                    task.unique_key, *task.concurrency(args, kwargs), *rate,
                    task._key("fair_key", args, kwargs))
        return (task.queue_name, task.priority, task.module_path, payload, task.run_after,
                None, None, None, *self._queue_rate(task.queue_name), None)

    def _queue_rate(self, queue):
        """The bucket of ``OPTIONS["RATE_LIMITS"]`` for a task of ``queue`` without a rate
        limit of its own: ``("queue:<name>", seconds per task, burst)``, or three Nones."""
        rate = self.opts.queue_rates.get(queue)
        return (f"queue:{queue}", *rate) if rate else (None, None, None)

    def _results(self, task, calls, rows, now):
        """TaskResults for stored rows; a unique key already pending gives that task."""
        results = []
        for (task_id, created), (args, kwargs) in zip(
            self.store.enqueue(self.alias, rows, now=now, age_rate=self.opts.AGE_RATE),
            calls, strict=True,
        ):
            if created:
                result = self._ready_result(task, task_id, now, args, kwargs)
                task_enqueued.send(type(self), task_result=result)
            else:
                result = self.get_result(task_id)
            results.append(result)
        return results

    def _ready_result(self, task, id, now, args, kwargs):
        # TaskResult copies args and kwargs itself (normalize_json).
        return build_result(
            task, id=id, status=TaskResultStatus.READY, enqueued_at=now, started_at=None,
            finished_at=None, last_attempted_at=None, args=args, kwargs=kwargs,
            backend=self.alias, errors=[], worker_ids="",
        )

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        [result] = self._results(task, [(args, kwargs)], [self._row(task, args, kwargs)],
                                 timezone.now())
        return result

    def bulk_enqueue(self, task, calls, *, batch_size=BULK_BATCH):
        """Enqueue ``task`` once per ``(args, kwargs)`` pair: one statement per batch."""
        self.validate_task(task)
        results = []
        calls = list(calls)
        options = option_overrides(task)  # the same for every call
        for start in range(0, len(calls), batch_size):
            chunk = calls[start:start + batch_size]
            rows = [self._row(task, args, kwargs, options) for args, kwargs in chunk]
            results += self._results(task, chunk, rows, timezone.now())
        return results

    def enqueue_workflow(self, name, steps):
        """Store a workflow (offload.workflows builds ``steps``: ``[(task, args, kwargs,
        receives, dependencies)]``, each dependency the index of an earlier step) in
        one transaction, the caller's if there is one: the workflow's row, its steps
        (the enqueue's statements, a batch each), which of them wait and for what.
        Returns ``(workflow id, [TaskResult])`` in step order."""
        from offload.models import Workflow

        rows = []
        for task, args, kwargs, receives, _ in steps:
            self.validate_task(task)
            if getattr(task, "unique_key", None) is not None:
                raise InvalidWorkflow(
                    f"{task.module_path}: a workflow step cannot have a unique_key (the step "
                    "would be another task's when the key is held); leave it out of the step.")
            rows.append(self._row(task, args, kwargs, receives=receives))
        at = timezone.now()
        store = self.store
        with transaction.atomic(using=store.db_alias):
            workflow = Workflow.objects.using(store.db_alias).create(
                backend=self.alias, name=name, created_at=at)
            ids = []
            for start in range(0, len(rows), BULK_BATCH):
                ids += [id_ for id_, _ in store.enqueue(self.alias, rows[start:start + BULK_BATCH],
                                                        now=at, age_rate=self.opts.AGE_RATE)]
            store.link(workflow=workflow.pk,
                       steps=[(id_, len(s[4])) for id_, s in zip(ids, steps, strict=True)],
                       edges=[(ids[parent], ids[i], position)
                              for i, s in enumerate(steps) for position, parent in enumerate(s[4])])
        results = []
        for id_, (task, args, kwargs, _, _) in zip(ids, steps, strict=True):
            results.append(self._ready_result(task, id_, at, args, kwargs))
            task_enqueued.send(type(self), task_result=results[-1])
        return workflow.pk, results

    # -- results ---------------------------------------------------------------

    def _rows(self, result_id):
        from offload.models import TaskRow

        try:
            pk = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        return TaskRow.objects.using(self.store.db_alias).filter(pk=pk, backend=self.alias)

    def _to_result(self, row, result_id):
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        args, kwargs, options, receives = decode_payload(row.payload)
        if receives and row.attempts:  # a step that ran: show what it ran with
            args = self.store.with_received(row.pk, receives, args)
        task = resolve_task(row.task_path, priority=row.priority, queue_name=row.queue_name,
                            run_after=row.run_after, backend=self.alias, options=options)
        # A BLOCKED workflow step is READY to django.tasks: enqueued, not yet running.
        status = TaskResultStatus.READY if row.status == BLOCKED else row.status
        return build_result(
            task, id=row.pk, status=status, enqueued_at=row.enqueued_at,
            started_at=row.started_at, finished_at=row.finished_at,
            last_attempted_at=row.last_attempted_at, args=args, kwargs=kwargs,
            backend=self.alias, errors=decode_errors(row.errors), worker_ids=row.worker_ids,
            return_value=row.return_value if row.status == TaskResultStatus.SUCCESSFUL else None,
        )

    def get_result(self, result_id):
        return self._to_result(self._rows(result_id).first(), result_id)

    async def aget_result(self, result_id):
        return self._to_result(await self._rows(result_id).afirst(), result_id)


def offload_backends():
    """Aliases of the Offload backends in TASKS, in settings order, leaving out any whose
    OPTIONS are invalid (``offload.E009`` reports those; using one raises)."""
    from django.tasks import task_backends

    return [alias for alias in task_backends.settings
            if isinstance(task_backends[alias], OffloadBackend)
            and task_backends[alias].config_error is None]


def bulk_enqueue(task, calls, *, batch_size=BULK_BATCH):
    """Enqueue many calls of one task: ``bulk_enqueue(send, [((1,), {}), ((2,), {})])``.

    Returns the TaskResults in order. Runs in the caller's transaction like ``enqueue``.
    """
    backend = task.get_backend()
    if not hasattr(backend, "bulk_enqueue"):
        raise TypeError(
            f"bulk_enqueue needs an OffloadBackend; {task.backend!r} is {type(backend).__name__}."
        )
    return backend.bulk_enqueue(task, calls, batch_size=batch_size)
