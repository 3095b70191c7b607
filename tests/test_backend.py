"""The django.tasks contract, exercised against OffloadBackend (tasks run in-process)."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.tasks import (
    DEFAULT_TASK_BACKEND_ALIAS,
    TaskContext,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from offload import OffloadBackend, OffloadTask, bulk_enqueue
from offload.exceptions import ArgumentsNotSerializable, InvalidTaskOptions
from offload.models import TaskRow
from offload.testing import run_until_empty
from tests.testapp import tasks
from tests.testapp.models import Note, Run

pytestmark = pytest.mark.django_db


def test_capabilities_are_all_supported():
    backend = task_backends["default"]
    assert isinstance(backend, OffloadBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority
    assert backend.task_class is OffloadTask
    assert isinstance(tasks.add, OffloadTask)


def test_enqueue_returns_a_ready_result_with_every_field():
    before = timezone.now()
    result = tasks.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert result.id and isinstance(result.id, str)
    assert before <= result.enqueued_at <= timezone.now()
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None, None, None)
    assert result.args == [2] and result.kwargs == {"b": 3}
    assert result.backend == DEFAULT_TASK_BACKEND_ALIAS
    assert result.errors == [] and result.worker_ids == [] and result.attempts == 0
    assert result.task.priority == 10 and result.task.queue_name == "emails"
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018 (the property raises)


def test_get_result_and_refresh_after_success():
    result = tasks.add.enqueue(2, 3)
    assert run_until_empty() == 1
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 5
    assert fetched.enqueued_at == result.enqueued_at
    assert fetched.started_at <= fetched.last_attempted_at <= fetched.finished_at
    assert len(fetched.worker_ids) == 1 and fetched.attempts == 1
    assert fetched.task.func is tasks.add.func
    assert tasks.add.get_result(result.id).id == result.id
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.is_finished


def test_get_result_errors():
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("999999")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("not-an-id")
    result = tasks.add.enqueue(1, 1)
    with pytest.raises(TaskResultMismatch):
        tasks.noop.get_result(result.id)
    with pytest.raises(TaskResultDoesNotExist):  # ids are per backend alias
        task_backends["other"].get_result(result.id)


@pytest.mark.django_db(transaction=True)
def test_async_api():
    async def scenario():
        result = await tasks.add.aenqueue(4, 5)
        assert result.status == TaskResultStatus.READY
        fetched = await tasks.add.aget_result(result.id)
        assert fetched.id == result.id and fetched.args == [4, 5]
        assert await sync_to_async(run_until_empty)() == 1
        await result.arefresh()
        assert result.return_value == 9
        await sync_to_async(connections.close_all)()  # the executor thread's connection

    asyncio.run(scenario())


def test_coroutine_task_runs():
    result = tasks.coro.enqueue(21)
    run_until_empty()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


def test_context_carries_result_and_attempt():
    result = tasks.context_info.using(priority=7).enqueue()
    run_until_empty()
    result.refresh()
    value = result.return_value
    assert value["id"] == result.id and value["attempt"] == 1
    assert value["status"] == TaskResultStatus.RUNNING and value["priority"] == 7
    assert value["worker_ids"] == result.worker_ids


def test_return_value_is_json_normalised():
    result = tasks.returns_tuple.enqueue()
    run_until_empty()
    result.refresh()
    assert result.return_value == [1, 2]


def test_signals_are_sent_with_the_backend_class():
    seen = []

    def record(name):
        def receiver(sender, task_result, **kwargs):
            seen.append((name, sender, task_result.id, task_result.status))
        return receiver

    receivers = {sig: record(name) for sig, name in
                 [(task_enqueued, "enqueued"), (task_started, "started"), (task_finished, "finished")]}
    for sig, receiver in receivers.items():
        sig.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
        assert seen == [("enqueued", OffloadBackend, result.id, TaskResultStatus.READY)]
        run_until_empty()
    finally:
        for sig, receiver in receivers.items():
            sig.disconnect(receiver)
    assert seen[1:] == [
        ("started", OffloadBackend, result.id, TaskResultStatus.RUNNING),
        ("finished", OffloadBackend, result.id, TaskResultStatus.SUCCESSFUL),
    ]


def test_priority_order_then_fifo():
    low = [tasks.logged.using(priority=-10).enqueue(f"low{i}") for i in range(3)]
    high = [tasks.logged.using(priority=90).enqueue(f"high{i}") for i in range(3)]
    mid = tasks.logged.enqueue("mid")
    assert run_until_empty() == 7
    order = list(Run.objects.order_by("id").values_list("key", flat=True))
    assert order == ["high0", "high1", "high2", "mid", "low0", "low1", "low2"]
    assert {r.id for r in low + high + [mid]} == set(Run.objects.values_list("task_id", flat=True))


def test_deferred_task_waits_for_run_after():
    later = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    soon = tasks.add.using(run_after=timezone.now() - timedelta(seconds=1)).enqueue(2, 2)
    assert run_until_empty() == 1
    later.refresh()
    soon.refresh()
    assert later.status == TaskResultStatus.READY and later.task.run_after is not None
    assert soon.status == TaskResultStatus.SUCCESSFUL


def test_queues_and_validation():
    with pytest.raises(InvalidTask, match="Queue 'nope'"):
        tasks.add.using(queue_name="nope").enqueue(1, 2)
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        from datetime import datetime

        tasks.add.using(run_after=datetime(2030, 1, 1))
    # A worker taking only some queues leaves the others alone.
    tasks.add.enqueue(1, 2)  # emails
    tasks.noop.enqueue()  # default
    assert run_until_empty(queues=["default"]) == 1
    assert run_until_empty(queues=["emails"]) == 1


def test_non_json_argument_names_the_argument():
    from decimal import Decimal

    with pytest.raises(ArgumentsNotSerializable, match=r"kwargs\['amount'\] is a Decimal"):
        tasks.echo.enqueue(1, amount=Decimal("9.99"))
    with pytest.raises(ArgumentsNotSerializable, match=r"args\[1\]\[0\] is a set"):
        tasks.echo.enqueue("ok", [{1, 2}])
    with pytest.raises(ArgumentsNotSerializable, match="finite float"):
        tasks.echo.enqueue(float("nan"))
    with pytest.raises(TypeError, match=r"args\[0\] is an object \(<object"):  # a TypeError,
        tasks.echo.enqueue(object())  # as Django's own backends raise; "an", not "a object"
    from uuid import uuid4

    with pytest.raises(ArgumentsNotSerializable, match=r"kwargs\['ref'\] is a UUID"):
        tasks.echo.enqueue(ref=uuid4())
    with pytest.raises(InvalidTaskOptions, match="unique_key=7: is an int;"):
        tasks.noop.using(unique_key=7)
    assert not TaskRow.objects.exists()


def test_task_options_are_validated():
    fine = tasks.with_options
    assert (fine.max_attempts, fine.timeout, fine.retry_backoff) == (5, 30.0, 2.0)
    assert fine.using(max_attempts=2, priority=3).max_attempts == 2
    with pytest.raises(InvalidTaskOptions, match="max_attempts"):
        fine.using(max_attempts=0)
    with pytest.raises(InvalidTaskOptions, match="timeout"):
        fine.using(timeout=-1)
    with pytest.raises(TypeError, match="max_atempts"):
        task(max_atempts=3)(tasks.plain_function)


def test_enqueue_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        Note.objects.create(text="rolled back")
        tasks.noop.enqueue()
        raise RuntimeError
    assert not TaskRow.objects.exists() and not Note.objects.exists()
    with transaction.atomic():
        Note.objects.create(text="kept")
        result = tasks.noop.enqueue()
    assert TaskRow.objects.filter(pk=result.id).exists()


def test_failure_is_recorded_with_exception_path_and_traceback():
    result = tasks.boom.enqueue("kaput")
    run_until_empty()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.finished_at is not None
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "kaput" in error.traceback and "Traceback" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018 (the property raises)


def test_retries_until_success():
    result = tasks.flaky.enqueue(succeed_on=3)
    assert run_until_empty() == 3
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3
    assert result.attempts == 3 and len(result.errors) == 2
    assert all(e.exception_class_path == "builtins.RuntimeError" for e in result.errors)


def test_retries_exhausted_fail():
    result = tasks.flaky.enqueue(succeed_on=9)
    assert run_until_empty() == 3
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and len(result.errors) == 3


def test_retry_waits_for_backoff():
    # Options set with .using() travel with the task: the worker honours them.
    result = tasks.flaky.using(retry_backoff=3600, retry_jitter=False).enqueue(succeed_on=2)
    assert run_until_empty() == 1
    row = TaskRow.objects.get(pk=result.id)
    assert row.status == "READY" and row.available_at > timezone.now() + timedelta(minutes=59)
    assert tasks.flaky.get_result(result.id).task.retry_backoff == 3600


def test_result_that_is_not_json_fails_the_task():
    result = tasks.returns_decimal.enqueue()
    run_until_empty()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "offload.exceptions.ResultNotSerializable"
    assert "Decimal" in result.errors[0].traceback


def test_system_exit_in_a_task_fails_only_that_task():
    result = tasks.exits.enqueue()
    run_until_empty()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.SystemExit"


def test_unknown_task_path_and_corrupt_payload_fail_cleanly():
    gone = tasks.noop.enqueue()
    corrupt = tasks.noop.enqueue()
    not_a_task = tasks.noop.enqueue()
    TaskRow.objects.filter(pk=gone.id).update(task_path="tests.testapp.tasks.renamed")
    TaskRow.objects.filter(pk=corrupt.id).update(payload="{not json")
    TaskRow.objects.filter(pk=not_a_task.id).update(task_path="tests.testapp.tasks.plain_function")
    after = tasks.add.enqueue(1, 1)
    assert run_until_empty() == 4
    rows = {r.pk: r for r in TaskRow.objects.all()}
    assert rows[int(after.id)].status == "SUCCESSFUL"
    for bad, cls in [(gone, "TaskNotFound"), (corrupt, "CorruptPayload"), (not_a_task, "TaskNotFound")]:
        row = rows[int(bad.id)]
        assert row.status == "FAILED", row
        assert f"offload.exceptions.{cls}" in row.errors


def test_several_backends_side_by_side():
    mine = tasks.noop.enqueue()
    theirs = tasks.other_noop.enqueue()
    assert theirs.backend == "other"
    assert run_until_empty("default") == 1
    assert run_until_empty("other") == 1
    assert task_backends["other"].get_result(theirs.id).return_value == "other"
    assert default_task_backend.get_result(mine.id).status == TaskResultStatus.SUCCESSFUL


def test_empty_queues_means_every_queue():
    result = tasks.anyqueue_noop.enqueue()
    assert run_until_empty("anyqueue") == 1
    assert tasks.anyqueue_noop.get_result(result.id).return_value == "any"


@pytest.mark.django_db(databases=["default", "tasks"])
def test_task_table_on_another_database():
    result = tasks.elsewhere_add.enqueue(20, 22)
    assert TaskRow.objects.using("tasks").filter(pk=result.id).exists()
    assert not TaskRow.objects.using("default").filter(backend="elsewhere").exists()
    assert run_until_empty("elsewhere") == 1
    assert tasks.elsewhere_add.get_result(result.id).return_value == 42


def test_bulk_enqueue_a_few_statements_per_batch():
    """SQLite: one INSERT per batch; PostgreSQL: a COPY per batch, between a statement
    that takes its ids and its NOTIFY."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["default"]) as queries:
        results = bulk_enqueue(tasks.add, [((i, i), {}) for i in range(2500)], batch_size=1000)
    assert len(queries) == 3 * (3 if connections["default"].vendor == "postgresql" else 1)
    assert len({r.id for r in results}) == 2500
    assert [int(r.id) for r in results] == sorted(int(r.id) for r in results)
    assert results[7].args == [7, 7]
    assert TaskRow.objects.filter(status="READY").count() == 2500
    run_until_empty(max_tasks=5)
    assert [tasks.add.get_result(r.id).return_value for r in results[:5]] == [0, 2, 4, 6, 8]


@pytest.mark.skipif(connections["default"].vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_enqueue_is_prepared_unless_something_watches_the_queries():
    connection = connections["default"]
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        tasks.add.enqueue(1, 2)
    assert any("INSERT INTO offload_task" in sql for sql in seen)  # the wrapper saw it
    tasks.add.enqueue(3, 4)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("INSERT INTO offload_task" in sql for sql in prepared)


def test_bulk_enqueue_is_part_of_the_callers_transaction():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        bulk_enqueue(tasks.add, [((i, i), {}) for i in range(300)])  # PostgreSQL: COPY
        assert TaskRow.objects.count() == 300
        raise RuntimeError("roll back")
    assert not TaskRow.objects.exists()


def test_bulk_enqueue_rejects_bad_arguments_before_writing():
    with pytest.raises(ArgumentsNotSerializable):
        bulk_enqueue(tasks.echo, [((1,), {}), ((object(),), {})])
    assert not TaskRow.objects.exists()


def test_task_context_type():
    assert TaskContext  # the public name the tasks use is importable


def test_reference_tour_of_the_public_api():
    """The rest of Django's Tasks reference, against OffloadBackend."""
    from django.tasks import DEFAULT_TASK_QUEUE_NAME
    from django.tasks.exceptions import InvalidTaskBackend

    assert tasks.add.name == "add" and tasks.add.module_path == "tests.testapp.tasks.add"
    assert tasks.add.call(1, 2) == 3 and asyncio.run(tasks.coro.acall(2)) == 4
    assert tasks.noop.queue_name == DEFAULT_TASK_QUEUE_NAME and not tasks.noop.takes_context
    assert tasks.add.get_backend() is task_backends["default"]
    assert tasks.noop.using(backend="other").get_backend() is task_backends["other"]
    assert task_backends["default"].check() == []
    with pytest.raises(InvalidTaskBackend):
        task_backends["missing"]
    result = default_task_backend.enqueue(tasks.add, (1,), {"b": 2})  # the proxy works too
    run_until_empty()
    context_result = tasks.context_info.enqueue()
    run_until_empty()
    result.refresh()
    assert result.return_value == 3 and result.attempts == 1
    assert TaskContext(task_result=result).attempt == 1
    assert default_task_backend.get_result(context_result.id).return_value["attempt"] == 1


@pytest.mark.django_db
def test_automatic_retention_prunes_old_results():
    from django.test import override_settings

    from offload.worker.supervisor import Supervisor

    result = tasks.noop.enqueue()
    run_until_empty()
    TaskRow.objects.filter(pk=result.id).update(finished_at=timezone.now() - timedelta(days=30))
    settings = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                            "OPTIONS": {"RETAIN": "7d"}}}
    with override_settings(TASKS=settings):
        Supervisor("default")._maintain(force=True)
    assert not TaskRow.objects.exists()
