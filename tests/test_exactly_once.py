"""Exactly-once effects for database tasks (docs/reliability.md#exactly-once-effects):
an ``atomic=True`` task's writes and its success commit together, with real worker
processes; the counter row counts effects, files under ``mark`` count runs."""

import os
import signal

import pytest
from django.db import connection
from django.db.models import Sum
from django.tasks import TaskResultStatus
from django.utils import timezone

from offload.exceptions import InvalidTaskOptions
from offload.models import TaskRow, TaskStat
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Counter, Note

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "tasks"]),
              pytest.mark.process]


def counter(name="c"):
    row = Counter.objects.filter(name=name).first()
    return row.value if row else 0


@pytest.fixture
def mark(tmp_path):
    """A directory where each run of add_one leaves a file: the runs, outside the database."""
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


def runs(mark, task_id=None):
    names = sorted(os.listdir(mark))
    return [n for n in names if task_id is None or n.startswith(f"{task_id}-")]


def test_atomic_tasks_commit_their_writes_with_their_success(start_worker):
    results = [tasks.add_one.enqueue() for _ in range(20)]
    worker = start_worker("--processes", "1", "--threads", "4")
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() == 20, timeout=60,
               message="20 atomic tasks done")
    assert counter() == 20
    assert all(tasks.add_one.get_result(r.id).return_value == "c" for r in results)
    wait_until(lambda: TaskStat.objects.filter(outcome="SUCCESSFUL").aggregate(n=Sum("tasks"))["n"] == 20,
               message="their sums in offload_series (added by the worker with its batch)")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_task_that_raises_after_writing_leaves_nothing_and_its_retry_stands(start_worker, mark):
    result = tasks.add_one.using(max_attempts=2).enqueue(fail_first=True, mark=str(mark))
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: tasks.add_one.get_result(result.id).is_finished, timeout=30,
               message="the task finished on its retry")
    done = tasks.add_one.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and len(runs(mark)) == 2
    assert done.errors[0].exception_class_path == "builtins.RuntimeError"
    assert counter() == 1  # the first attempt's write was rolled back with it
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_write_through_another_database_fails_the_task_and_is_rolled_back(start_worker):
    result = tasks.add_one.using(max_attempts=3).enqueue(elsewhere=True)
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: tasks.add_one.get_result(result.id).is_finished, timeout=30,
               message="the task failed")
    done = tasks.add_one.get_result(result.id)
    assert done.status == TaskResultStatus.FAILED and len(done.errors) == 1  # not retried
    error = done.errors[0]
    assert error.exception_class_path == "offload.exceptions.AtomicScopeError"
    assert "wrote through database 'tasks'" in error.traceback and "route the writes" in error.traceback
    assert counter() == 0 and not Note.objects.using("tasks").exists()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_frozen_worker_s_late_commit_is_rolled_back(start_worker, tmp_path, mark):
    """A worker frozen (SIGSTOP) inside an atomic task, past its lease: on PostgreSQL
    the task is rescued and runs again on a second server (waiting on the frozen
    transaction's row lock); when the frozen one resumes, its record is refused and its
    write rolled back, and the re-run's stands. On SQLite the frozen transaction holds
    the one write lock, so nothing is rescued meanwhile and it commits once resumed.
    Either way the counter ends at exactly 1."""
    Counter.objects.create(name="c")
    go = tmp_path / "go"
    env = {"OFFLOAD_TEST_LEASE": 2}
    first = start_worker("--processes", "1", "--threads", "1", env=env)
    result = tasks.add_one.enqueue(mark=str(mark), hold=str(go))
    wait_until(lambda: runs(mark, result.id), timeout=30, message="the first run started")
    pid = int(runs(mark, result.id)[0].split("-")[2])
    os.kill(pid, signal.SIGSTOP)
    try:
        second = start_worker("--processes", "1", "--threads", "1", env=env)
        if connection.vendor == "postgresql":
            wait_until(lambda: len(runs(mark, result.id)) == 2, timeout=30,
                       message="the task rescued and running again on the second server")
        else:
            wait_until(lambda: TaskRow.objects.get(pk=result.id).lease_expires_at
                       < timezone.now() - timezone.timedelta(seconds=1),
                       timeout=30, message="the frozen run's lease expired")
        go.touch()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: tasks.add_one.get_result(result.id).status == TaskResultStatus.SUCCESSFUL,
               timeout=30, message="the task SUCCESSFUL")
    for worker in (first, second):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    assert counter() == 1
    assert TaskRow.objects.get(pk=result.id).status == "SUCCESSFUL"


def test_atomic_is_refused_where_it_cannot_hold():
    with pytest.raises(InvalidTaskOptions, match="atomic=True needs a plain \\(sync\\) function"):
        tasks.alogged.using(atomic=True)  # an async def
    with pytest.raises(InvalidTaskOptions, match="atomic='yes': use True or False"):
        tasks.add_one.using(atomic="yes")
