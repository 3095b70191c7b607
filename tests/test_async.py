"""Coroutine tasks on the asyncio executor, in real worker processes: many at once
beside few threads, Django's async ORM inside them, timeouts that cancel, SIGTERM and
SIGKILL, and a mix of sync and async tasks in one worker."""

import signal

import pytest
from django.db import connection
from django.db.models import Count
from django.tasks import TaskResultStatus

from offload import bulk_enqueue
from offload.models import TaskRow
from tests.conftest import kill_a_process_mid_drain, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def statuses():
    return dict(TaskRow.objects.values_list("status").annotate(n=Count("id")))


def test_coroutines_run_many_at_once_beside_one_thread(burst, tmp_path):
    """40 coroutines that each finish only once all 40 run at the same time, on one
    process with one thread: on the threads (``--async-concurrency 0``) they could not."""
    folder = str(tmp_path / "arrived")
    results = bulk_enqueue(tasks.gathers, [((folder, 40), {})] * 40)
    burst("--processes", "1", "--threads", "1")
    assert statuses() == {"SUCCESSFUL": 40}
    assert len({tasks.gathers.get_result(r.id).return_value for r in results}) == 1  # one process


def test_without_the_executor_coroutines_take_threads(burst, tmp_path):
    """``--async-concurrency 0``: each coroutine holds a thread, so three threads run at
    most three at once and the gathering fails (the test above can fail)."""
    folder = str(tmp_path / "arrived")
    bulk_enqueue(tasks.gathers, [((folder, 4), {"timeout": 1.0})] * 4)
    burst("--processes", "1", "--threads", "3", "--async-concurrency", "0")
    assert statuses().get("FAILED", 0) >= 1


def test_async_orm_and_context_inside_a_coroutine_task(burst):
    results = bulk_enqueue(tasks.alogged, [((f"k{i}",), {}) for i in range(50)])
    burst("--processes", "1", "--threads", "1")
    assert statuses() == {"SUCCESSFUL": 50}
    assert sorted(Run.objects.values_list("key", flat=True)) == sorted(f"k{i}" for i in range(50))
    assert {r.task_id for r in Run.objects.all()} == {r.id for r in results}


def test_a_timeout_cancels_the_coroutine_and_keeps_the_process(start_worker, tmp_path):
    marker = tmp_path / "cancelled"
    slow = tasks.anaps.enqueue(30, marker=str(marker))  # timeout=1
    worker = start_worker("--processes", "1", "--threads", "1")
    worker.wait_started()
    [child] = worker.children()
    wait_until(lambda: tasks.anaps.get_result(slow.id).is_finished, timeout=20,
               message="timeout recorded")
    result = tasks.anaps.get_result(slow.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "offload.exceptions.TaskTimeout"
    assert "it was cancelled" in result.errors[0].traceback
    assert marker.exists()  # CancelledError reached the coroutine's await
    after = tasks.add.enqueue(1, 2)
    wait_until(lambda: tasks.add.get_result(after.id).is_finished, timeout=20, message="next task")
    assert worker.children() == [child]  # not replaced


def test_a_coroutine_that_ignores_its_cancellation_gets_its_process_replaced(start_worker):
    stuck = tasks.stubborn.enqueue(60)  # timeout=1, cancelled, keeps running
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: tasks.stubborn.get_result(stuck.id).is_finished, timeout=20,
               message="timeout recorded")
    result = tasks.stubborn.get_result(stuck.id)
    assert result.status == TaskResultStatus.FAILED
    assert "its worker process was replaced" in result.errors[0].traceback
    after = tasks.add.enqueue(1, 2)  # the replacement process serves
    wait_until(lambda: tasks.add.get_result(after.id).is_finished, timeout=20, message="next task")
    worker.wait_event("loop-started", count=2)


def test_sigterm_finishes_in_flight_coroutines(start_worker, tmp_path):
    gate = tmp_path / "gate"
    results = bulk_enqueue(tasks.awaits_for, [((str(gate),), {})] * 20)
    worker = start_worker("--processes", "1", "--threads", "1", "--grace", "20s")
    wait_until(lambda: statuses() == {"RUNNING": 20}, message="all twenty running")
    worker.signal(signal.SIGTERM)
    worker.wait_event("stopping")
    gate.touch()
    assert worker.wait(30) == 0
    assert {tasks.awaits_for.get_result(r.id).status for r in results} == {"SUCCESSFUL"}


def test_grace_expiry_hands_running_coroutines_back(start_worker, tmp_path):
    bulk_enqueue(tasks.awaits_for, [((str(tmp_path / "never"),), {})] * 5)
    worker = start_worker("--processes", "1", "--threads", "1", "--grace", "0.5s")
    wait_until(lambda: statuses() == {"RUNNING": 5}, message="all five running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert statuses() == {"READY": 5}
    assert not TaskRow.objects.filter(claimed_by__isnull=False).exists()


def test_sigkill_loses_no_coroutine_and_reruns_only_those_in_flight(start_worker):
    n = 300
    bulk_enqueue(tasks.alogged, [((f"k{i}",), {"sleep": 0.05}) for i in range(n)])
    worker = start_worker("--processes", "2", "--threads", "1")
    rescued, twice = kill_a_process_mid_drain(worker, n, ran=40)
    assert twice <= rescued  # only tasks the killed process held ran again


def test_sync_and_async_tasks_in_one_worker_each_run_once(burst):
    bulk_enqueue(tasks.logged, [((f"s{i}",), {}) for i in range(150)])
    bulk_enqueue(tasks.alogged, [((f"a{i}",), {}) for i in range(150)])
    burst("--processes", "2", "--threads", "2")
    assert statuses() == {"SUCCESSFUL": 300}
    runs = Run.objects.values("key").annotate(n=Count("id"))
    assert len(runs) == 300 and {r["n"] for r in runs} == {1}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: sessions per process")
def test_coroutines_that_use_the_orm_leave_no_connection_behind(start_worker):
    """Django keeps a connection per async context: each coroutine task that used the
    ORM opened its own, and the executor closes it when the task ends (as a request's),
    so 200 of them leave the process with its own two sessions."""
    bulk_enqueue(tasks.alogged, [((f"k{i}",), {}) for i in range(200)])
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: statuses() == {"SUCCESSFUL": 200}, timeout=60, message="all 200 ran")
    [name] = {f"offload:{w}" for w in TaskRow.objects.values_list("worker_ids", flat=True)}

    def sessions():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
            return cursor.fetchone()[0]

    wait_until(lambda: sessions() == 2, timeout=10, message=f"two sessions ({sessions()})")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
