"""Flow control with real worker processes (docs/flow-control.md): concurrency keys
hold across servers, never occupy a slot while they wait, and are freed by a rescue."""

import io
import itertools
import os
import signal

import pytest
from django.db import connections
from django.tasks import TaskResultStatus

import offload
from offload import bulk_enqueue
from offload.exceptions import InvalidTaskOptions
from offload.models import TaskRow
from tests.conftest import max_overlap, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def test_one_key_runs_one_task_at_a_time_across_two_servers(start_worker):
    """30 tasks of 50 ms holding one key, two servers with no flags: never two at once,
    and all of them run (a task waiting for the key holds no slot and does not fail)."""
    servers = [start_worker(), start_worker()]
    for server in servers:
        server.wait_started()  # both compete for the key from the first task on
    bulk_enqueue(tasks.span.using(concurrency_key="application:42"),
                 [((f"k{i}",), {"sleep": 0.05}) for i in range(30)])
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() == 30, timeout=60,
               message="30 keyed tasks done")
    runs = Run.objects.all()
    assert runs.count() == 30 and max_overlap(runs) == 1
    for server in servers:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_distinct_keys_run_in_parallel(start_worker):
    """The key computed from each task's arguments (a callable): 30 keys, 30 at once
    as far as the server's slots go."""
    per_application = tasks.span.using(concurrency_key=lambda key, **_: f"application:{key}")
    bulk_enqueue(per_application, [((f"{i}",), {"sleep": 0.05}) for i in range(30)])
    assert TaskRow.objects.filter(concurrency_key="application:7", concurrency_limit=1).exists()
    worker = start_worker()
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() == 30, timeout=60,
               message="30 tasks with distinct keys done")
    assert max_overlap(Run.objects.all()) >= 4  # the default server runs 8 at once
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_sigkilled_holder_frees_its_key_at_rescue(start_worker):
    """The holder of a key is SIGKILLed mid-task: the next task of that key starts once
    the supervisor has rescued the dead process's tasks, not after the holder's lease."""
    worker = start_worker("--processes", "2", "--threads", "2", env={"OFFLOAD_TEST_LEASE": 300})
    worker.wait_started()
    holder = tasks.span.using(concurrency_key="k").enqueue("holder", sleep=3)
    waiting = tasks.span.using(concurrency_key="k").enqueue("next")
    run = wait_until(lambda: Run.objects.filter(key="holder").first(), message="the holder running")
    assert TaskRow.objects.get(pk=waiting.id).status == "READY"  # the key is held
    os.kill(run.pid, signal.SIGKILL)
    wait_until(lambda: tasks.span.get_result(waiting.id).status == TaskResultStatus.SUCCESSFUL,
               timeout=30, message="the waiting task ran after the rescue")
    assert TaskRow.objects.get(pk=holder.id).rescues == 1
    wait_until(lambda: tasks.span.get_result(holder.id).is_finished, timeout=30,
               message="the rescued holder ran again")
    assert TaskRow.objects.get(pk=holder.id).status == "SUCCESSFUL"
    assert max_overlap(Run.objects.exclude(ended=None)) == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


@pytest.mark.parametrize("options, message", [
    ({"concurrency_limit": 0}, "concurrency_limit=0: use a whole number from 1 to 10,000"),
    ({"concurrency_limit": 2.5}, "concurrency_limit=2.5: use a whole number"),
    ({"concurrency_key": ""}, "concurrency_key='': is empty"),
    ({"concurrency_key": 42}, "concurrency_key=42: is an int"),
    ({"concurrency_key": lambda *a, **k: None}, "its concurrency_key callable returned None, not a str"),
    ({"concurrency_key": lambda *a, **k: ""}, "concurrency_key (computed)='': is empty"),
    ({"concurrency_key": lambda *a, **k: 1 / 0},
     "its concurrency_key callable raised ZeroDivisionError: division by zero"),
])
def test_bad_concurrency_options_are_refused_at_enqueue(options, message):
    with pytest.raises(InvalidTaskOptions) as caught:
        tasks.span.using(**options).enqueue("x")
    assert message in str(caught.value)
    assert not TaskRow.objects.exists()


def test_a_limit_without_a_key_limits_the_task_itself():
    result = tasks.span.using(concurrency_limit=3).enqueue("x")
    row = TaskRow.objects.get(pk=result.id)
    assert (row.concurrency_key, row.concurrency_limit) == ("tests.testapp.tasks.span", 3)
    plain = TaskRow.objects.get(pk=tasks.span.enqueue("y").id)
    assert (plain.concurrency_key, plain.concurrency_limit) == (None, None)


# -- rate limits -----------------------------------------------------------------------

def starts_per_window(starts, window=1.0):
    """The most of ``starts`` (datetimes, sorted) in any window of ``window`` seconds."""
    most, first = 0, 0
    for last, at in enumerate(starts):
        while (at - starts[first]).total_seconds() >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_200_tasks_at_20_per_second_take_10_seconds_across_two_servers(start_worker):
    """rate_limit="20/s" (burst 1), two servers with no flags: the 200 runs span 199
    intervals of 50 ms (10 s +- 10 %), and no second holds more than 20 + 1 starts."""
    servers = [start_worker(), start_worker()]
    for server in servers:
        server.wait_started()
    bulk_enqueue(tasks.span.using(rate_limit="20/s"), [((f"r{i}",), {}) for i in range(200)])
    wait_until(lambda: Run.objects.count() == 200, timeout=60, message="200 rate-limited tasks ran")
    starts = sorted(Run.objects.values_list("started", flat=True))  # the ledger: bodies ran
    took = (starts[-1] - starts[0]).total_seconds()
    assert 9.95 * 0.9 <= took <= 9.95 * 1.1, took
    # When each started, as its TaskResult says (last_attempted_at: its claim); a body
    # starts a few ms later on its thread, so two can be closer than their turns.
    # Claims that come late (a loaded machine) do not bunch: beyond the burst no two
    # starts are closer than half an interval.
    attempts = sorted(TaskRow.objects.values_list("last_attempted_at", flat=True))
    assert starts_per_window(attempts) <= 21
    assert min((b - a).total_seconds() for a, b in itertools.pairwise(attempts)) >= 0.024
    assert len({pid for pid in Run.objects.values_list("pid", flat=True)}) >= 2  # both servers took some
    for server in servers:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_a_throttled_backlog_holds_no_slot_and_other_work_passes(start_worker):
    """One thread, 20 tasks at 2/s ahead of 20 plain ones: the plain ones all finish
    while the throttled ones wait for their turns (no thread sleeps on a turn)."""
    throttled = bulk_enqueue(tasks.span.using(rate_limit="2/s", priority=10),
                             [((f"slow{i}",), {}) for i in range(20)])
    plain = bulk_enqueue(tasks.span, [((f"plain{i}",), {}) for i in range(20)])
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: all(tasks.span.get_result(r.id).is_finished for r in plain), timeout=30,
               message="the plain tasks done behind a throttled backlog")
    finished = sum(tasks.span.get_result(r.id).is_finished for r in throttled)
    assert finished <= 3  # ~1 token per 0.5 s while the plain ones ran
    assert TaskRow.objects.filter(rate_paced=True, status="READY").count() >= 15
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_queue_rate_limit_is_the_bucket_of_its_tasks_without_their_own():
    from django.tasks import task_backends

    default = task_backends["default"]
    params = {**default.params, "OPTIONS": {**default.params.get("OPTIONS", {}),
                                            "RATE_LIMITS": {"emails": {"rate": "100/m", "burst": 5}}}}
    backend = type(default)("default", params)
    queued = backend.enqueue(tasks.span.using(queue_name="emails"), ["x"], {})
    own = backend.enqueue(tasks.span.using(queue_name="emails", rate_limit="1/s"), ["y"], {})
    other = backend.enqueue(tasks.span, ["z"], {})
    rows = {str(r.pk): r for r in TaskRow.objects.all()}
    assert (rows[queued.id].rate_key, rows[queued.id].rate_burst) == ("queue:emails", 5)
    assert abs(rows[queued.id].rate_interval - 0.6) < 1e-9
    assert (rows[own.id].rate_key, rows[own.id].rate_interval) == ("tests.testapp.tasks.span", 1.0)
    assert rows[other.id].rate_key is None


@pytest.mark.parametrize("options, message", [
    ({"rate_limit": "20"}, "rate_limit='20' is not a rate: use a string such as '20/s'"),
    ({"rate_limit": "0/s"}, "rate_limit='0/s' is not a rate"),
    ({"rate_limit": "20/s", "rate_burst": 0}, "rate_burst=0: use a whole number from 1 to 10,000"),
    ({"rate_burst": 5}, "rate_burst and rate_limit_key need a rate_limit"),
    ({"rate_limit": "1/s", "rate_limit_key": lambda *a, **k: 7},
     "its rate_limit_key callable returned 7, not a str"),
    ({"fair_key": ""}, "fair_key='': is empty"),
])
def test_bad_rate_and_fair_options_are_refused_at_enqueue(options, message):
    with pytest.raises(InvalidTaskOptions) as caught:
        tasks.span.using(**options).enqueue("x")
    assert message in str(caught.value)
    assert not TaskRow.objects.exists()


# -- fair sharing ------------------------------------------------------------------------

def test_a_quiet_tenant_s_task_goes_next_not_behind_a_busy_tenant_s_burst(start_worker):
    """One thread working through tenant A's 100 tasks of 20 ms: tenant B's one task,
    enqueued meanwhile, starts after at most a few more of A's (the ones already
    claimed), not after the rest of A's burst."""
    bulk_enqueue(tasks.span.using(fair_key=lambda key, **_: "tenant:a"),
                 [((f"a{i}",), {"sleep": 0.02}) for i in range(100)])
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: Run.objects.filter(key__startswith="a").count() >= 5, timeout=30,
               message="tenant A's burst under way")
    quiet = tasks.span.using(fair_key="tenant:b").enqueue("b")
    before = Run.objects.filter(key__startswith="a").count()
    wait_until(lambda: Run.objects.filter(key="b").exists(), timeout=30, message="tenant B's task ran")
    started = Run.objects.get(key="b").started
    overtaken = Run.objects.filter(key__startswith="a", started__lt=started).count() - before
    assert overtaken <= 4, overtaken  # FIFO would run the ~95 left of A's first
    assert TaskRow.objects.get(pk=quiet.id).fair_key == "tenant:b"
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


# -- cancelling a running task --------------------------------------------------------

def test_a_running_sync_task_that_looks_is_cancelled_and_never_runs_again(start_worker):
    """The task checks offload.cancellation between steps: it stops at the request,
    ends FAILED with Cancelled though it had attempts left, and its thread (the only
    one) runs the next task."""
    worker = start_worker("--processes", "1", "--threads", "1")
    worker.wait_started()
    running = tasks.stoppable.using(max_attempts=3).enqueue("stoppable")
    wait_until(lambda: Run.objects.filter(key="stoppable").exists(), message="the task running")
    following = tasks.span.enqueue("next")
    assert offload.cancel(running.id, reason="customer withdrew") == "stopping"
    wait_until(lambda: tasks.stoppable.get_result(running.id).is_finished, timeout=5,
               message="the cancelled task finished within the grace")
    result = tasks.stoppable.get_result(running.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "offload.exceptions.Cancelled"
    assert "cancelled: customer withdrew" in result.errors[-1].traceback
    wait_until(lambda: tasks.span.get_result(following.id).status == TaskResultStatus.SUCCESSFUL,
               message="the next task on the freed thread")
    assert Run.objects.filter(key="stoppable").count() == 1  # not retried
    assert offload.cancel(running.id) == "finished"
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_running_coroutine_is_cancelled_at_its_next_await(start_worker):
    worker = start_worker("--processes", "1", "--threads", "1")
    worker.wait_started()
    running = tasks.alogged.using(max_attempts=3).enqueue("coroutine", sleep=60)
    wait_until(lambda: Run.objects.filter(key="coroutine").exists(), message="the coroutine running")
    assert offload.cancel(running.id) == "stopping"
    wait_until(lambda: tasks.alogged.get_result(running.id).is_finished, timeout=5,
               message="the cancelled coroutine finished within the grace")
    result = tasks.alogged.get_result(running.id)
    assert (result.status, result.errors[-1].exception_class_path) == (
        TaskResultStatus.FAILED, "offload.exceptions.Cancelled")
    assert Run.objects.filter(key="coroutine").count() == 1
    again = tasks.alogged.enqueue("after")
    wait_until(lambda: tasks.alogged.get_result(again.id).is_finished, message="the slot free again")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_task_that_does_not_stop_is_failed_and_its_process_replaced(start_worker):
    """A sync task that never looks: after CANCEL_GRACE (1 s here) it is FAILED with
    Cancelled anyway and its process is replaced; it never runs again."""
    worker = start_worker("--processes", "1", "--threads", "2", env={"OFFLOAD_TEST_CANCEL_GRACE": 1})
    worker.wait_started()
    running = tasks.span.using(max_attempts=3).enqueue("deaf", sleep=60)
    run = wait_until(lambda: Run.objects.filter(key="deaf").first(), message="the task running")
    assert offload.cancel(running.id) == "stopping"
    wait_until(lambda: tasks.span.get_result(running.id).is_finished, timeout=10,
               message="failed after the grace")
    result = tasks.span.get_result(running.id)
    assert (result.status, result.errors[-1].exception_class_path) == (
        TaskResultStatus.FAILED, "offload.exceptions.Cancelled")
    wait_until(lambda: worker.children() and run.pid not in worker.children(), timeout=15,
               message="the process replaced")
    after = tasks.span.enqueue("after")
    wait_until(lambda: tasks.span.get_result(after.id).is_finished, message="work goes on")
    assert Run.objects.filter(key="deaf").count() == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_cancel_of_a_ready_task_a_finished_one_and_an_unknown_id(start_worker):
    from django.core.management import call_command
    from django.tasks.exceptions import TaskResultDoesNotExist

    ready = tasks.span.enqueue("never")
    assert offload.cancel(ready) == "cancelled"
    assert tasks.span.get_result(ready.id).errors[-1].exception_class_path == "offload.exceptions.Cancelled"
    assert offload.cancel(ready.id) == "finished"
    with pytest.raises(TaskResultDoesNotExist):
        offload.cancel("123456789")
    with pytest.raises(TypeError, match="not an Offload backend"):
        offload.cancel("1", backend="immediate")
    other = tasks.span.enqueue("cli")
    out = io.StringIO()
    call_command("offload", "cancel", other.id, "--reason", "duplicate", stdout=out)
    assert out.getvalue().strip() == f"{other.id}: cancelled (it had not started)"
    assert "cancelled by manage.py offload cancel: duplicate" in \
        tasks.span.get_result(other.id).errors[-1].traceback


# -- a claim's follow-up work (SQLite) -----------------------------------------------

sqlite_only = pytest.mark.skipif(
    connections["default"].vendor != "sqlite",
    reason="SQLite: PostgreSQL sets keys aside and gives turns inside the claim statement")


def _claim(store, at):
    return store.claim(backend="default", queues=[], limit=4, worker="w1", lease=60, now=at)


@sqlite_only
def test_a_server_beaten_to_pacing_a_bucket_keeps_what_it_claimed(monkeypatch):
    """Two servers after the same bucket: one looks (unpaced_buckets) and sees due tasks,
    the other gives them their turns first, so the first finds none left to pace. This
    raced once in CI while the look ran after the claim's commit: the pacing failed and
    the claim's task stayed RUNNING until its lease expired (30 s). The look now runs in
    the claim's transaction, under its write lock; played here in one process by pacing
    again right after the look, the claim returns its task and the turns given stand."""
    from django.tasks import task_backends

    from offload.clock import now

    store = task_backends["default"].store
    bulk_enqueue(tasks.span.using(rate_limit="20/s"), [((f"r{i}",), {}) for i in range(5)])
    at, look, real, raced = now(), store.sql("unpaced_buckets"), store.execute, []

    def execute(sql, params=(), fetch=True):
        rows = real(sql, params, fetch)
        if sql == look and not raced:
            raced.append(sql)
            store._pace("default", at, 0.0)  # the other server, between the look and the turns
        return rows

    monkeypatch.setattr(store, "execute", execute)
    claimed = _claim(store, at)
    assert raced and len(claimed) == 1
    rows = TaskRow.objects.exclude(pk=claimed[0].id)
    assert sorted(rows.values_list("status", "rate_paced")) == [("READY", True)] * 4


@sqlite_only
def test_a_claim_whose_follow_up_fails_leaves_its_tasks_ready(monkeypatch):
    """The claim, setting aside full keys and giving turns are one transaction: if the
    last fails, what the claim took goes back with it instead of waiting out a lease."""
    from django.db import OperationalError
    from django.tasks import task_backends

    from offload.clock import now

    store = task_backends["default"].store
    tasks.span.using(rate_limit="1/s").enqueue("first")
    tasks.span.using(rate_limit="1/s").enqueue("second")

    def fail(*args):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_pace", fail)
    with pytest.raises(OperationalError):
        _claim(store, now())
    assert list(TaskRow.objects.values_list("status", flat=True)) == ["READY", "READY"]
