"""The async server as real processes: burst, SIGKILL, SIGTERM, timeouts, bad input."""

import os
import signal

import pytest
from django.db import connection
from django.db.models import Count
from django.tasks import TaskResultStatus

from offload import bulk_enqueue
from offload.models import TaskRow
from offload.worker.planner import MAX_WINDOW
from tests.conftest import kill_a_process_mid_drain, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def statuses():
    return dict(TaskRow.objects.values_list("status").annotate(n=Count("id")))


def test_burst_drains_everything_once(burst):
    results = bulk_enqueue(tasks.logged, [((f"k{i}",), {}) for i in range(300)])
    burst("--processes", "2", "--threads", "4")
    assert statuses() == {"SUCCESSFUL": 300}
    assert Run.objects.count() == 300
    assert Run.objects.values("key").distinct().count() == 300
    assert len({r.pid for r in Run.objects.all()}) >= 1
    assert tasks.logged.get_result(results[0].id).worker_ids[0].count("-") >= 3


def test_a_server_says_when_every_task_would_open_a_new_connection(burst):
    """Django's default CONN_MAX_AGE = 0 closes a task's connections at its end: the
    server warns once at start, naming the aliases; with connections kept, it does not."""
    out = burst("--processes", "1", "--threads", "1")
    assert "DATABASES default, tasks: CONN_MAX_AGE is 0" in out and "CONN_HEALTH_CHECKS" in out
    kept = burst("--processes", "1", "--threads", "1", env={"OFFLOAD_TEST_CONN_MAX_AGE": 60})
    assert "CONN_MAX_AGE is 0" not in kept


def test_idle_worker_picks_up_new_work(start_worker):
    worker = start_worker("--processes", "1", "--threads", "2")
    worker.wait_started()
    result = tasks.add.enqueue(40, 2)
    wait_until(lambda: tasks.add.get_result(result.id).is_finished, timeout=10, message="pickup")
    assert tasks.add.get_result(result.id).return_value == 42
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_sigkill_of_a_worker_process_loses_nothing(start_worker):
    n = 120
    bulk_enqueue(tasks.logged, [((f"k{i}",), {"sleep": 0.02}) for i in range(n)])
    worker = start_worker("--processes", "2", "--threads", "3")
    wait_until(lambda: Run.objects.count() >= 20, message="tasks running")
    victim = Run.objects.order_by("-id").values_list("pid", flat=True)[0]  # a task process
    assert victim in worker.children()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: statuses() == {"SUCCESSFUL": n}, timeout=60, message="all tasks successful")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert "exited with -9" in worker.output, worker.output
    # Every task ran; only tasks in flight in the killed process (at most its 3 threads)
    # may have run twice.
    runs = Run.objects.values("key").annotate(n=Count("id"))
    assert len(runs) == n
    assert sum(r["n"] - 1 for r in runs) <= 3
    rescued = TaskRow.objects.filter(rescues__gt=0)
    assert rescued.count() <= 3
    for row in rescued:
        assert len(row.worker_ids.split(",")) == 2


def test_sigterm_finishes_in_flight_work(start_worker):
    result = tasks.logged.enqueue("slow", sleep=1.5)
    worker = start_worker("--processes", "1", "--threads", "1", "--grace", "20s")
    wait_until(lambda: Run.objects.filter(key="slow").exists(), message="task started")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert tasks.logged.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_grace_expiry_hands_unfinished_work_back(start_worker):
    result = tasks.logged.enqueue("long", sleep=30)
    worker = start_worker("--processes", "1", "--threads", "1", "--grace", "0.5s")
    wait_until(lambda: Run.objects.filter(key="long").exists(), message="task started")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    row = TaskRow.objects.get(pk=result.id)
    assert (row.status, row.lease_token, row.claimed_by) == ("READY", None, None)
    assert "handed back 1 unfinished task" in worker.output


def test_second_signal_stops_at_once(start_worker):
    result = tasks.logged.enqueue("long", sleep=30)
    worker = start_worker("--processes", "1", "--threads", "1", "--grace", "60s")
    wait_until(lambda: Run.objects.filter(key="long").exists(), message="task started")
    worker.signal(signal.SIGINT)
    worker.wait_event("stopping")  # the first signal seen
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 0
    assert TaskRow.objects.get(pk=result.id).status == "READY"


def test_sigterm_stops_a_worker_whose_statements_keep_failing(start_worker, tmp_path):
    """The task table is renamed away while a task runs, so every worker statement fails
    (no such table / relation does not exist) and the finished task's outcome cannot be
    recorded. SIGTERM still stops the worker within its grace; the task stays RUNNING
    under its lease, for the lease to expire and a rescue to run it again."""
    gate = tmp_path / "release"
    result = tasks.waits_for.enqueue(str(gate))
    worker = start_worker("--processes", "1", "--threads", "1", "--grace", "1s")
    wait_until(lambda: TaskRow.objects.filter(pk=result.id, status="RUNNING").exists(),
               message="task running")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE offload_task RENAME TO offload_task_away")
    try:
        gate.touch()  # the task finishes; recording its outcome fails from now on
        worker.wait_event("db-error", timeout=15)  # the worker's statements failing
        worker.signal(signal.SIGTERM)
        # Within the grace (1 s) plus a margin; the supervisor's own kill comes at +10 s.
        assert worker.wait(1 + 4) == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE offload_task_away RENAME TO offload_task")
    assert "was not recorded" in worker.output and "killing it" not in worker.output
    row = TaskRow.objects.get(pk=result.id)
    assert (row.status, row.lease_token is not None) == ("RUNNING", True)


def test_timeout_fails_the_task_and_replaces_the_process(start_worker):
    slow = tasks.sleeps.enqueue(20)  # timeout=1
    worker = start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: tasks.sleeps.get_result(slow.id).is_finished, timeout=20,
               message="timeout recorded")
    result = tasks.sleeps.get_result(slow.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "offload.exceptions.TaskTimeout"
    after = tasks.add.enqueue(1, 2)  # the replacement process keeps serving
    wait_until(lambda: tasks.add.get_result(after.id).is_finished, timeout=20, message="next task")
    assert "exited with 75" in worker.output


def test_bad_input_fails_only_those_tasks(start_worker):
    gone, corrupt = tasks.noop.enqueue(), tasks.noop.enqueue()
    TaskRow.objects.filter(pk=gone.id).update(task_path="tests.testapp.tasks.vanished")
    TaskRow.objects.filter(pk=corrupt.id).update(payload='{"args": 5}')
    raising = tasks.boom.enqueue()
    not_json = tasks.returns_decimal.enqueue()
    exits = tasks.exits.enqueue()
    worker = start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: statuses() == {"FAILED": 5}, timeout=20, message="five failures")
    good = tasks.add.enqueue(2, 2)
    wait_until(lambda: tasks.add.get_result(good.id).status == "SUCCESSFUL", timeout=20,
               message="server still serving")
    paths = {
        r.pk: r.errors for r in TaskRow.objects.filter(status="FAILED")
    }
    assert "TaskNotFound" in paths[int(gone.id)] and "CorruptPayload" in paths[int(corrupt.id)]
    assert "ValueError" in paths[int(raising.id)]
    assert "ResultNotSerializable" in paths[int(not_json.id)]
    assert "SystemExit" in paths[int(exits.id)]
    assert worker.proc.poll() is None and "exited with" not in worker.output


def test_unknown_queue_is_a_clear_error(start_worker):
    worker = start_worker("--queues", "nope", "--burst")
    assert worker.wait(30) != 0
    assert "does not declare" in worker.output


def test_frozen_worker_cannot_overwrite_the_newer_attempt(start_worker):
    """SIGSTOP a worker past its lease: the task is rescued and run elsewhere; after
    SIGCONT the frozen worker's late result is refused."""
    env = {"OFFLOAD_TEST_LEASE": 1, "OFFLOAD_TEST_TASK_SLEEP": 3}
    result = tasks.pid.enqueue()
    first = start_worker("--processes", "1", "--threads", "1", env=env)
    wait_until(lambda: TaskRow.objects.filter(pk=result.id, status="RUNNING").exists(),
               message="task running")
    [frozen] = first.children()
    os.kill(frozen, signal.SIGSTOP)
    try:
        second = start_worker("--processes", "1", "--threads", "1", env=env)
        wait_until(lambda: tasks.pid.get_result(result.id).is_finished, timeout=30,
                   message="the task finishes elsewhere")
    finally:
        os.kill(frozen, signal.SIGCONT)
    wait_until(lambda: first.seen("outcome-refused"), timeout=15,
               message=f"late write refused:\n{first.output}")
    final = tasks.pid.get_result(result.id)
    assert final.status == TaskResultStatus.SUCCESSFUL
    assert final.return_value != frozen and final.return_value in second.children()
    assert len(final.worker_ids) == 2
    assert TaskRow.objects.get(pk=result.id).rescues == 1


def test_finished_tasks_make_room_without_waiting_for_the_poll(start_worker):
    """The loop refills free threads as tasks finish; POLL_SECONDS (an hour here) is only
    the fallback. A loop that waited for the poll would not finish within the deadline."""
    bulk_enqueue(tasks.slowpoll_nap, [((), {})] * 30)
    worker = start_worker("--backend", "slowpoll", "--processes", "1", "--threads", "2", "--burst")
    assert worker.wait(60) == 0
    assert statuses() == {"SUCCESSFUL": 30}


def test_an_idle_worker_wakes_for_a_bulk_enqueue(start_worker):
    """A bulk enqueue large enough for PostgreSQL's COPY path still wakes an idle server
    (its NOTIFY), long before the hour-long poll."""
    worker = start_worker("--backend", "slowpoll", "--processes", "1", "--threads", "2")
    worker.wait_started()
    bulk_enqueue(tasks.slowpoll_nap, [((), {})] * 300)
    wait_until(lambda: statuses() == {"SUCCESSFUL": 300}, timeout=30, message="all 300 ran")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: connections per process")
def test_a_busy_worker_process_holds_two_connections(start_worker, tmp_path):
    """The loop's, and the LISTEN connection, which also renews the leases (no heartbeat
    thread with a connection of its own): counted from pg_stat_activity by the
    application_name every session of a worker process carries, once leases were
    renewed (the lease is 1 s, so a heartbeat every third of a second)."""
    gate = tmp_path / "gate"
    results = bulk_enqueue(tasks.waits_for, [((str(gate),), {})] * 4)
    worker = start_worker("--processes", "2", "--threads", "2", env={"OFFLOAD_TEST_LEASE": 1})
    wait_until(lambda: statuses() == {"RUNNING": 4}, message="four tasks running")
    first = dict(TaskRow.objects.values_list("pk", "lease_expires_at"))
    wait_until(lambda: all(TaskRow.objects.get(pk=pk).lease_expires_at > at for pk, at in first.items()),
               message="every lease renewed")
    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                       "WHERE application_name LIKE 'offload:%%' GROUP BY 1")
        sessions = dict(cursor.fetchall())
    names = {f"offload:{w}" for r in results for w in TaskRow.objects.get(pk=r.id).worker_ids.split(",")}
    assert {name: sessions.get(name) for name in names} == dict.fromkeys(names, 2)
    gate.touch()
    wait_until(lambda: statuses() == {"SUCCESSFUL": 4}, message="all four done")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_sigkill_with_a_claim_window_reruns_only_what_was_running(start_worker):
    """Short tasks fill the claim window (tasks claimed ahead of the threads). Whatever
    the killed process held comes back (rescued) and runs elsewhere: nothing is lost,
    and only tasks it held may run twice (those running, or finished but not yet
    recorded: at most its threads plus its window)."""
    n, threads = 4000, 3  # (each task writes its Run row on a connection of its own:
    # ~100 tasks/s on a loaded 2-core machine, so 10,000 could not drain in the deadline)
    bulk_enqueue(tasks.logged, [((f"k{i}",), {"sleep": 0.001}) for i in range(n)])
    worker = start_worker("--processes", "2", "--threads", str(threads))
    rescued, twice = kill_a_process_mid_drain(worker, n, ran=600)
    assert rescued  # the killed process held tasks, and they came back
    assert twice <= rescued  # only tasks the killed process held ran again
    assert len(twice) <= threads + MAX_WINDOW


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: LISTEN")
@pytest.mark.parametrize("listen", ["false", "direct", "broken"])
def test_listen_off_or_elsewhere_keeps_pickup_and_leases(start_worker, listen):
    """OPTIONS["LISTEN"]: False (poll), a DATABASES alias for the same database, or an
    alias whose server cannot be reached (the LISTEN connection fails: the worker polls,
    and renews its leases through its own connection meanwhile). In every case a task
    enqueued to an idle server runs, and a task that outlives its 1 s lease three times
    over keeps it: it is never rescued or run twice."""
    worker = start_worker("--processes", "1", "--threads", "2",
                          env={"OFFLOAD_TEST_LISTEN": listen, "OFFLOAD_TEST_LEASE": 1})
    worker.wait_started()
    quick = tasks.add.enqueue(2, 3)
    wait_until(lambda: tasks.add.get_result(quick.id).is_finished, timeout=15, message="pickup")
    slow = tasks.logged.enqueue("slow", sleep=3)
    wait_until(lambda: tasks.logged.get_result(slow.id).is_finished, timeout=30, message="slow task")
    row = TaskRow.objects.get(pk=slow.id)
    assert (row.status, row.rescues, Run.objects.filter(key="slow").count()) == ("SUCCESSFUL", 0, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                       "AND query LIKE 'LISTEN%%'", [f"offload:{row.worker_ids}"])
        listening = cursor.fetchone()[0]
    if listen != "direct":  # (a listening session's last statement is its heartbeat)
        assert listening == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
