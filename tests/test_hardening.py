"""The paths around the hot path (issue 10): damaged rows, raising receivers, ageing in
every claim, supervisors that must not wedge, hang or shrink the fleet. Real worker
processes against the test database, as in test_worker.py."""

import io
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, F
from django.tasks import TaskResultStatus

from offload import bulk_enqueue
from offload.clock import now
from offload.models import TaskRow
from tests.conftest import ROOT, free_port, offload_checks, wait_until, worker_env
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


def test_a_task_failed_for_its_lost_worker_sends_task_finished_with_worker_lost(
        start_worker, tmp_path):
    """MAX_RESCUES = 0: the worker running the task is SIGKILLed, the supervisor's rescue
    fails the task, and sends task_finished while a WorkerLost is being handled."""
    busy = tasks.waits_for.enqueue(str(tmp_path / "never"))
    worker = start_worker("--processes", "1", env={"OFFLOAD_TEST_RECEIVERS": "record",
                                                   "OFFLOAD_TEST_MAX_RESCUES": 0})
    wait_until(lambda: TaskRow.objects.filter(pk=busy.id, status="RUNNING").exists(),
               message="the task running")
    os.kill(worker.children()[0], signal.SIGKILL)
    wait_until(lambda: Run.objects.filter(key=f"finished:{busy.id}:FAILED:WorkerLost").exists(),
               timeout=15, message="task_finished with WorkerLost")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


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


# -- the supervisor: start-up, crash loops, maintenance, companions ---------------------


def test_a_manage_py_without_main_guard_runs_workers(tmp_path):
    """multiprocessing's spawn re-ran such a manage.py in every worker, which died
    bootstrapping; the server respawned it forever and --burst never exited."""
    manage = tmp_path / "manage.py"
    manage.write_text("import os, sys\n"
                      "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')\n"
                      "from django.core.management import execute_from_command_line\n"
                      "execute_from_command_line(sys.argv)\n")
    results = bulk_enqueue(tasks.noop, [((), {})] * 3)
    done = subprocess.run([sys.executable, str(manage), "offload", "worker", "--burst",
                           "--processes", "1"], env=worker_env(), cwd=ROOT, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(tasks.noop.get_result(r.id).status == "SUCCESSFUL" for r in results)


def test_a_killed_worker_is_replaced_at_once(start_worker):
    """SIGKILL is not a crash loop: each killed worker, however young, is replaced at
    once (the old back-off reached 4 s by the fourth kill)."""
    worker = start_worker("--processes", "1", "--threads", "1")
    pid = wait_until(lambda: worker.children(), message="a worker process")[0]
    for kill in range(5):
        os.kill(pid, signal.SIGKILL)
        pid = wait_until(lambda: [p for p in worker.children() if p != pid], timeout=2.5,
                         message=f"a replacement after kill {kill + 1}")[0]
    result = tasks.noop.enqueue()
    wait_until(lambda: tasks.noop.get_result(result.id).is_finished, message="still serving")


def test_a_worker_started_as_its_supervisor_dies_stops_by_itself(monkeypatch):
    """The loop took its parent's pid when it started; a worker started just as its
    supervisor was SIGKILLed had already been adopted, so it never saw it was orphaned
    (seen by the fault suite's storm). The supervisor now passes its own pid."""
    from offload.worker import child

    for name, value in worker_env().items():
        monkeypatch.setenv(name, value)
    gone = subprocess.Popen(["true"])
    gone.wait()
    popen, fd = child.spawn({"alias": "default", "queues": ["default"], "threads": 1,
                             "worker_id": "orphan-1", "grace": 1.0, "burst": False,
                             "reserve": None, "queue_limits": {}, "server": "",
                             "parent": gone.pid})
    try:
        assert popen.wait(30) == 0
    finally:
        os.close(fd)
        if popen.poll() is None:
            popen.kill()


def test_workers_that_cannot_start_stop_the_server(start_worker):
    """Settings that fail only in a worker process: the server gives up after a few
    starts and exits 1, in --burst and as a server, instead of respawning forever."""
    for burst in ((), ("--burst",)):
        worker = start_worker("--processes", "2", *burst,
                              env={"OFFLOAD_TEST_BROKEN_WORKER": "1"})
        assert worker.wait(60) == 1


def test_a_maintenance_error_does_not_stop_or_wedge_the_server(start_worker):
    """A schedule whose queue is not declared fails to enqueue at every occurrence (an
    InvalidTask, not a database error): it used to leave the supervisor's run(), which
    then waited forever on its workers and ignored SIGTERM."""
    from offload.models import Schedule

    # --skip-checks: system check offload.E007 would refuse this set-up at start-up
    worker = start_worker("--backend", "periodic", "--processes", "1",
                          env={"OFFLOAD_TEST_BAD_PERIODIC": "1"}, options=["--skip-checks"])
    first = wait_until(lambda: Schedule.objects.filter(backend="periodic").first(),
                       message="the schedule seen").last_run_at
    # Two-second cron: two occurrences come and fail; the schedule does not advance.
    wait_until(lambda: now() > first + timedelta(seconds=4.5), timeout=10, message="time")
    assert Schedule.objects.get(backend="periodic").last_run_at == first
    result = tasks.periodic_tick.using(queue_name="default").enqueue()
    wait_until(lambda: tasks.periodic_tick.get_result(result.id).is_finished,
               message="the server still serving")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0


def _group_alive(pgid):
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_role_all_leaves_no_web_server_behind_when_the_async_server_cannot_start(tmp_path):
    """The async server of role "all" refuses to start (its database is not migrated
    or not there); the command exits 1 and its gunicorn goes with it."""
    empty = tmp_path / "empty.sqlite3" if connection.vendor == "sqlite" else "offload_no_such_db"
    env = worker_env(OFFLOAD_DB_NAME=empty, OFFLOAD_ROLE="all",
                     OFFLOAD_WEB_BIND=f"127.0.0.1:{free_port()}")
    proc = subprocess.Popen([sys.executable, "-m", "django", "offload", "run"],
                            env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proc.wait(60) == 1
        assert not _group_alive(proc.pid), "a process of the role outlived it"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def test_bad_profiles_are_system_check_errors():
    from django.test import override_settings

    from offload.checks import check_roles

    for profile, words in (({"threads": 2, "reserve": "2:50"}, "SLOTS must be 1..1"),
                           ({"threads": 0}, "whole number >= 1"),
                           ({"queue_limits": {"default": 0}}, "whole numbers >= 1")):
        with override_settings(OFFLOAD_PROFILES={"async-x": profile}):
            [error] = check_roles()
        assert error.id == "offload.E005" and words in error.msg, error.msg


def test_a_periodic_schedule_into_an_undeclared_queue_is_a_check_error(settings):
    settings.TASKS = {**settings.TASKS, "periodic": {
        "BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"PERIODIC": {
            "tick": {"task": "tests.testapp.tasks.periodic_tick", "cron": "* * * * *",
                     "queue_name": "nowhere"}}}}}
    errors = [e for e in offload_checks() if e.id == "offload.E007"]
    assert len(errors) == 1 and "'nowhere'" in errors[0].msg


def test_the_worker_refuses_a_bad_schedule_at_start_up():
    """The backend checks read settings only, so they run with every command (they
    were tagged as database checks, which Django runs only when an alias is named)."""
    done = subprocess.run([sys.executable, "-m", "django", "offload", "worker", "--burst"],
                          env=worker_env(OFFLOAD_TEST_BAD_PERIODIC="1"), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "offload.E007" in done.stderr, done.stderr


# -- the registry: outages, draining, several databases -------------------------------


def test_a_server_marked_dead_after_a_silence_comes_back(start_worker):
    """After a database outage longer than the silence allowed, the first server back
    marks the others dead; they used to drain and exit 0 (a restart-on-failure policy
    never brought them back). A server whose only fault was the database stays."""
    from offload import registry
    from offload.models import Server

    worker = start_worker("--processes", "1")
    worker.wait_started()
    server = wait_until(lambda: Server.objects.filter(pid=worker.proc.pid).first(),
                        message="the server registered")
    Server.objects.filter(pk=server.pk).update(heartbeat_at=now() - timedelta(minutes=5))
    assert registry.mark_dead(db="default", silent_for=60) == [server.pk]
    wait_until(lambda: Server.objects.get(pk=server.pk).state == "running", timeout=10,
               message="the server back to running")
    result = tasks.noop.enqueue()
    wait_until(lambda: tasks.noop.get_result(result.id).is_finished, message="still serving")
    assert worker.proc.poll() is None


def test_a_draining_server_keeps_heartbeating_and_is_healthy(start_worker, tmp_path):
    from offload.models import Server

    gate = tmp_path / "gate"
    busy = tasks.waits_for.enqueue(str(gate))
    worker = start_worker("--processes", "1", "--grace", "60s")
    try:
        wait_until(lambda: TaskRow.objects.filter(pk=busy.id, status="RUNNING").exists(),
                   message="a task running")
        worker.signal(signal.SIGTERM)
        server = Server.objects.get(pid=worker.proc.pid)
        wait_until(lambda: Server.objects.get(pk=server.pk).state == "retiring",
                   message="the server shown draining")
        stale = now() - timedelta(minutes=5)
        Server.objects.filter(pk=server.pk).update(heartbeat_at=stale)
        wait_until(lambda: Server.objects.get(pk=server.pk).heartbeat_at > stale + timedelta(minutes=4),
                   timeout=10, message="a heartbeat while draining")
        health = subprocess.run([sys.executable, "-m", "django", "offload", "health"],
                                env=worker_env(), cwd=ROOT, capture_output=True, text=True)
        assert health.returncode == 0 and "draining" in health.stdout, health.stdout + health.stderr
    finally:
        gate.touch()
    assert worker.wait(30) == 0
    assert TaskRow.objects.get(pk=busy.id).status == "SUCCESSFUL"


def test_mark_dead_does_not_mark_a_server_that_just_heartbeat(monkeypatch):
    """mark_dead looked, then updated by id without re-checking the silence: a server
    heartbeating in between was marked dead. Each mark re-checks it now."""
    from offload import registry
    from offload.models import Server

    registry.register("racy-1", role="async", release="A", db="default", pid=1)
    Server.objects.filter(id="racy-1").update(heartbeat_at=now() - timedelta(minutes=5))
    queryset = type(Server.objects.all())
    real_filter = queryset.filter
    calls = []

    def heartbeat_between(self, *args, **kwargs):  # the heartbeat lands after the look
        if kwargs.get("id") == "racy-1" and not calls:
            calls.append(1)
            registry.beat("racy-1", db="default")
        return real_filter(self, *args, **kwargs)

    monkeypatch.setattr(queryset, "filter", heartbeat_between)
    assert registry.mark_dead(db="default", silent_for=60) == []
    monkeypatch.undo()
    assert calls and Server.objects.get(id="racy-1").state == "running"


@pytest.mark.django_db(transaction=True, databases=["default", "tasks"])
def test_retire_and_listing_cover_every_task_database():
    """A backend whose tasks live in another database registers its servers there (the
    claim's fence reads them there); retire and the listing used to look only in
    "default"."""
    from offload import registry

    assert registry.databases() == ["default", "tasks"]
    registry.register("web-1", role="web", release="A", db=registry.home(), pid=1)
    registry.register("elsewhere-1", role="async", release="A", db="tasks", pid=2)
    assert sorted(s.id for s in registry.listing()) == ["elsewhere-1", "web-1"]
    out = io.StringIO()
    call_command("offload", "retire", "--keep-release", "B", stdout=out)
    assert "Retiring 2 server(s)" in out.getvalue()
    from offload.models import Server

    assert Server.objects.using("tasks").get(id="elsewhere-1").state == "retiring"


# -- scoping: each backend's maintenance touches only its own tasks ----------------------


def test_prune_and_rescue_touch_only_their_backend():
    store = tasks.noop.get_backend().store
    mine, theirs = tasks.noop.enqueue(), tasks.other_noop.enqueue()
    old = now() - timedelta(days=30)
    TaskRow.objects.filter(pk__in=[mine.id, theirs.id]).update(status="SUCCESSFUL", finished_at=old)
    assert store.prune(backend="default", before=now()) == 1
    assert list(TaskRow.objects.values_list("backend", flat=True)) == ["other"]
    TaskRow.objects.all().delete()
    mine, theirs = tasks.noop.enqueue(), tasks.other_noop.enqueue()
    TaskRow.objects.update(status="RUNNING", lease_token=1, claimed_by="w", lease_expires_at=old,
                           rescues=3)
    rows = store.rescue(backend="default", now=now(), max_rescues=3)  # default's MAX_RESCUES
    assert rows == [(int(mine.id), "FAILED")]
    assert TaskRow.objects.get(pk=theirs.id).status == "RUNNING"


# -- PostgreSQL: sessions that outlive their client, connections the server ended --------

postgres_only = pytest.mark.skipif(
    os.environ.get("OFFLOAD_TEST_DB") != "postgres",
    reason="PostgreSQL only: SQLite has no server-side sessions (a dead process's "
           "transaction is rolled back by SQLite itself, and there is no connection to lose)")


@postgres_only
def test_a_claim_in_flight_when_its_worker_is_killed_is_taken_back_at_once(start_worker):
    """PostgreSQL finishes a statement whose client died and commits it: a claim sent
    just before a SIGKILL committed after the supervisor's immediate rescue, and its
    tasks waited a whole lease. The claim here is held on the queue's advisory lock
    (claim_limited); the supervisor now ends the dead worker's sessions first."""
    import psycopg

    results = bulk_enqueue(tasks.crm_sync, [((f"c{i}",), {}) for i in range(2)])
    params = connection.get_connection_params()
    with psycopg.connect(**{k: params[k] for k in ("host", "port", "user", "dbname")},
                         autocommit=True) as blocker:
        blocker.execute("SELECT pg_advisory_lock(hashtextextended('offload:limited:crm', 0))")
        worker = start_worker("--backend", "limited", "--processes", "1", "--threads", "2")

        def blocked_claim():
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                               "AND query LIKE '%%pg_advisory_xact_lock%%'")
                return cursor.fetchone()[0]

        wait_until(blocked_claim, message="the worker's claim waiting on the lock")
        os.kill(worker.children()[0], signal.SIGKILL)
        wait_until(lambda: not blocked_claim(), timeout=10,
                   message="the dead worker's session ended")
        blocker.execute("SELECT pg_advisory_unlock(hashtextextended('offload:limited:crm', 0))")
    # The lease is 30 s: within 15 s only a claim that never committed lets this pass.
    wait_until(lambda: all(tasks.crm_sync.get_result(r.id).status == "SUCCESSFUL" for r in results),
               timeout=15, message="both tasks run by the replacement")
    assert not TaskRow.objects.filter(rescues__gt=0).exists()


@postgres_only
def test_the_web_role_heartbeat_reconnects_after_its_connection_is_ended(tmp_path):
    """gunicorn_conf's heartbeat thread caught the error of a connection the server had
    ended (a restart, a failover) but kept the broken connection: 'the connection is
    closed' every 2 s forever, and the serving web server was marked dead."""
    from offload.models import Server

    env = worker_env(OFFLOAD_ROLE="web", OFFLOAD_WEB_BIND=f"127.0.0.1:{free_port()}",
                     WEB_CONCURRENCY=1)
    log = open(tmp_path / "web.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "django", "offload", "run"], env=env,
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        # a heartbeat after the registration: the heartbeat thread has its connection
        wait_until(lambda: Server.objects.filter(pid=proc.pid, role="web",
                                                 heartbeat_at__gt=F("started_at")).exists(),
                   message="the web server registered and heartbeating")
        with connection.cursor() as cursor:  # end every other session of this database
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ended = now()
        wait_until(lambda: Server.objects.get(pid=proc.pid).heartbeat_at > ended + timedelta(seconds=2),
                   timeout=15, message="a heartbeat on a new connection")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.django_db(databases=["default", "tasks"])  # servers of every task database
def test_status_shows_a_failure_whose_stored_errors_are_damaged():
    """offload status read each failure's errors whole and json.loads'ed them."""
    failed = tasks.boom.enqueue()
    TaskRow.objects.filter(pk=failed.id).update(status="FAILED", finished_at=now(), errors="{bad")
    out = io.StringIO()
    call_command("offload", "status", stdout=out)
    assert f"{failed.id} " in out.getvalue() and "CorruptPayload" in out.getvalue()
