"""The paths around the hot path (issue 10): damaged rows, raising receivers, ageing in
every claim, supervisors that must not wedge, hang or shrink the fleet. Real worker
processes against the test database, as in test_worker.py."""

import json
import signal

import pytest
from django.db.models import Count
from django.tasks import TaskResultStatus

from offload import bulk_enqueue
from offload.models import TaskRow
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def statuses(**filters):
    return dict(TaskRow.objects.filter(**filters).values_list("status").annotate(n=Count("id")))


def test_damaged_rows_fail_and_the_worker_keeps_serving(start_worker):
    """Rows whose path does not import and whose stored errors are not a JSON list used
    to kill the thread that failed them: with as many such rows as threads, nothing
    behind them ran and --burst never exited."""
    damaged = [tasks.noop.enqueue() for _ in range(4)]
    for i, result in enumerate(damaged):
        TaskRow.objects.filter(pk=result.id).update(
            task_path="nosuch.task", errors=["{bad", "{}", "[1]", '[{"x": 1}]'][i])
    good = bulk_enqueue(tasks.logged, [((f"good{i}",), {}) for i in range(20)])
    worker = start_worker("--burst", "--processes", "1", "--threads", "4")
    assert worker.wait(60) == 0
    assert statuses() == {"SUCCESSFUL": 20, "FAILED": 4}
    assert Run.objects.count() == 20
    for result in damaged:  # get_result cannot build a Task for a path that does not import
        errors = json.loads(TaskRow.objects.get(pk=result.id).errors)
        assert [e["exception_class_path"] for e in errors] == [
            "offload.exceptions.CorruptPayload", "offload.exceptions.TaskNotFound"]
        assert "changed outside Offload" in errors[0]["traceback"]
        assert "'nosuch.task' cannot be imported" in errors[1]["traceback"]
    assert all(tasks.logged.get_result(r.id).status == "SUCCESSFUL" for r in good)


def test_bad_options_and_a_raised_keyboardinterrupt_cost_no_thread(burst):
    """A row whose options are invalid fails with InvalidTaskOptions; a task raising
    KeyboardInterrupt (which the runner lets through, for run_inline in the main thread)
    reaches the thread's last-resort handler. One thread: a lost thread would leave the
    rest unrun and --burst waiting forever."""
    bad = tasks.boom.enqueue()
    TaskRow.objects.filter(pk=bad.id).update(
        payload='{"args": [], "kwargs": {}, "options": {"max_attempts": "three"}}')
    interrupted = tasks.interrupts.enqueue()
    after = bulk_enqueue(tasks.noop, [((), {})] * 4)
    burst("--processes", "1", "--threads", "1")
    assert "InvalidTaskOptions" in TaskRow.objects.get(pk=bad.id, status="FAILED").errors
    [error] = tasks.interrupts.get_result(interrupted.id).errors
    assert error.exception_class_path == "builtins.KeyboardInterrupt"
    assert all(tasks.noop.get_result(r.id).status == "SUCCESSFUL" for r in after)


def test_raising_receivers_cost_no_slot_and_no_rerun(start_worker):
    """task_started and task_finished receivers that raise: every task still runs once
    and succeeds, the process survives (no rescue), --burst exits."""
    bulk_enqueue(tasks.logged, [((f"r{i}",), {}) for i in range(20)])
    worker = start_worker("--burst", "--processes", "1", "--threads", "2",
                          env={"OFFLOAD_TEST_RECEIVERS": "raise"})
    assert worker.wait(60) == 0
    assert statuses() == {"SUCCESSFUL": 20}
    assert Run.objects.count() == 20 and Run.objects.values("key").distinct().count() == 20
    assert not TaskRow.objects.filter(rescues__gt=0).exists()
    assert all(len(r.worker_ids.split(",")) == 1 for r in TaskRow.objects.all())


def test_task_finished_of_a_failure_is_sent_while_its_exception_is_handled(start_worker):
    """Django's logging receiver (and error monitoring) read sys.exc_info() in
    task_finished: a FAILED task's signal carries its exception, a timeout's its
    TaskTimeout; a success carries none."""
    ok, failed, late = tasks.noop.enqueue(), tasks.boom.enqueue(), tasks.sleeps.enqueue(30)
    worker = start_worker("--processes", "1", "--threads", "3",
                          env={"OFFLOAD_TEST_RECEIVERS": "record"})
    wait_until(lambda: Run.objects.filter(key__startswith="finished:").count() == 3,
               timeout=30, message="three task_finished signals")
    worker.signal(signal.SIGTERM)
    worker.wait()
    assert set(Run.objects.values_list("key", flat=True)) == {
        f"finished:{ok.id}:SUCCESSFUL:-", f"finished:{failed.id}:FAILED:ValueError",
        f"finished:{late.id}:FAILED:TaskTimeout"}


def test_reserved_slots_take_ageing_work(start_worker, tmp_path):
    """With ageing on, a fresh task carries an age key until it reaches the cap; the
    reserved slot's claim used to pass no ageing parameters and so saw none of them
    (until maintenance capped them, AGE_CAP / AGE_RATE = 50 s later)."""
    gate = tmp_path / "gate"
    busy = tasks.waits_for.using(backend="aged").enqueue(str(gate))
    worker = start_worker("--backend", "aged", "--processes", "1", "--threads", "2",
                          "--reserve", "1:50")
    try:
        wait_until(lambda: TaskRow.objects.filter(pk=busy.id, status="RUNNING").exists(),
                   message="the general slot busy")
        urgent = tasks.aged_logged.using(priority=60).enqueue("urgent")
        wait_until(lambda: tasks.aged_logged.get_result(urgent.id).status == "SUCCESSFUL",
                   timeout=15, message="the urgent task run in the reserved slot")
    finally:
        gate.touch()
    wait_until(lambda: TaskRow.objects.get(pk=busy.id).status == TaskResultStatus.SUCCESSFUL,
               message="the busy task done")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
