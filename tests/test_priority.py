"""Priority promises: ageing, reserved capacity, queue limits, pause, unique tasks, periodic."""

import itertools
import signal
from datetime import UTC, datetime, timedelta

import pytest
from django.tasks import task_backends
from django.utils import timezone

from offload import bulk_enqueue
from offload.ageing import age_key
from offload.models import Schedule, TaskRow
from offload.scheduling.periodic import Periodic, due, parse_schedules
from offload.testing import run_until_empty
from offload.worker.scheduler import Scheduler
from tests.conftest import max_overlap, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run


def age(result, seconds):
    """Pretend ``result`` became runnable ``seconds`` ago (as the ageing index sees it)."""
    row = TaskRow.objects.get(pk=result.id)
    row.available_at = timezone.now() - timedelta(seconds=seconds)
    row.age_key = age_key(row.priority, row.available_at, task_backends[row.backend].opts.AGE_RATE)
    row.save()


# -- ageing ------------------------------------------------------------------------

@pytest.mark.django_db
def test_ageing_lifts_waiting_tasks_up_to_the_cap():
    # AGE_RATE = 1 point per second, AGE_CAP = 50 (tests/settings.py "aged").
    old_low = tasks.aged_logged.using(priority=-10).enqueue("old_low")  # -10 + 30 = 20
    age(old_low, 30)
    capped = tasks.aged_logged.using(priority=-100).enqueue("capped")  # -100 + 50 = -50
    age(capped, 1000)
    tasks.aged_logged.using(priority=10).enqueue("high")  # 10 (fresh)
    young_low = tasks.aged_logged.using(priority=-10).enqueue("young_low")  # -10 + 5 = -5
    age(young_low, 5)
    assert run_until_empty("aged") == 4
    assert list(Run.objects.order_by("id").values_list("key", flat=True)) == [
        "old_low", "high", "young_low", "capped"]


@pytest.mark.django_db
def test_without_ageing_priority_is_strict():
    old = tasks.logged.using(priority=-10).enqueue("old")
    TaskRow.objects.filter(pk=old.id).update(available_at=timezone.now() - timedelta(days=1))
    tasks.logged.using(priority=10).enqueue("new")
    run_until_empty()
    assert list(Run.objects.order_by("id").values_list("key", flat=True)) == ["new", "old"]


@pytest.mark.django_db
def test_retry_keeps_ageing_key_in_step():
    result = tasks.flaky.using(backend="aged", retry_backoff=60, retry_jitter=False).enqueue(succeed_on=2)
    run_until_empty("aged")
    row = TaskRow.objects.get(pk=result.id)
    assert row.status == "READY"
    assert row.age_key == pytest.approx(age_key(row.priority, row.available_at, 1.0))


# -- pause and resume ----------------------------------------------------------------

@pytest.mark.django_db
def test_paused_queue_keeps_its_tasks():
    from django.core.management import call_command

    call_command("offload", "pause", "emails")
    add = tasks.add.enqueue(1, 1)  # emails
    tasks.noop.enqueue()  # default
    assert run_until_empty() == 1
    assert TaskRow.objects.get(pk=add.id).status == "READY"
    call_command("offload", "resume", "emails")
    assert run_until_empty() == 1
    assert tasks.add.get_result(add.id).return_value == 2


@pytest.mark.django_db(transaction=True)
def test_pause_is_honoured_by_running_servers(start_worker):
    from django.core.management import call_command

    worker = start_worker("--processes", "1", "--threads", "2")
    worker.wait_started()
    call_command("offload", "pause", "default")
    held = tasks.noop.enqueue()
    other = tasks.add.enqueue(2, 2)  # emails still runs
    wait_until(lambda: tasks.add.get_result(other.id).is_finished, timeout=10, message="emails task")
    assert TaskRow.objects.get(pk=held.id).status == "READY"
    call_command("offload", "resume", "default")
    wait_until(lambda: tasks.noop.get_result(held.id).is_finished, timeout=1.5,
               message="resumed queue honoured within a second")


def test_pause_rejects_an_unknown_queue():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not one of"):
        call_command("offload", "pause", "nope")


# -- unique tasks ----------------------------------------------------------------------

@pytest.mark.django_db
def test_unique_key_returns_the_pending_task():
    first = tasks.add.using(unique_key="offer:7").enqueue(1, 2)
    again = tasks.add.using(unique_key="offer:7").enqueue(1, 2)
    assert again.id == first.id and TaskRow.objects.count() == 1
    other = tasks.add.using(unique_key="offer:8").enqueue(1, 2)
    assert other.id != first.id
    run_until_empty()
    after = tasks.add.using(unique_key="offer:7").enqueue(1, 2)  # the first one finished
    assert after.id != first.id and after.status == "READY"


@pytest.mark.django_db
def test_bulk_enqueue_with_unique_keys():
    pending = tasks.echo.using(unique_key="k1").enqueue(0)
    keyed = [tasks.echo.using(unique_key=f"k{i % 3}") for i in range(6)]
    results = [bulk_enqueue(t, [((i,), {})])[0] for i, t in enumerate(keyed)]
    assert results[1].id == pending.id and results[4].id == pending.id
    assert results[0].id == results[3].id and results[2].id == results[5].id
    assert TaskRow.objects.count() == 3
    mixed = bulk_enqueue(tasks.echo.using(unique_key="same"), [((1,), {}), ((2,), {})])
    assert mixed[0].id == mixed[1].id


# -- reserved capacity ----------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_reserved_slot_starts_urgent_work_behind_a_busy_backlog(start_worker):
    bulk_enqueue(tasks.span.using(priority=-50), [((f"low{i}",), {"sleep": 2}) for i in range(8)])
    worker = start_worker("--processes", "1", "--threads", "3", "--reserve", "1:50")
    wait_until(lambda: Run.objects.filter(key__startswith="low").count() == 2,
               message="both general slots busy")
    middle = tasks.span.using(priority=10).enqueue("middle")
    urgent = tasks.span.using(priority=60).enqueue("urgent")
    wait_until(lambda: Run.objects.filter(key="urgent").exists(), timeout=1.5,
               message="urgent task started in the reserved slot")
    assert Run.objects.filter(key__startswith="low").count() == 2  # nothing else moved
    assert TaskRow.objects.get(pk=middle.id).status == "READY"  # below the reservation
    wait_until(lambda: tasks.span.get_result(middle.id).is_finished, timeout=15, message="middle")
    assert tasks.span.get_result(urgent.id).status == "SUCCESSFUL"
    worker.signal(signal.SIGTERM)


def test_reserve_flag_is_validated():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="SLOTS"):
        call_command("offload", "worker", "--threads", "2", "--reserve", "2:50")
    with pytest.raises(CommandError, match="SLOTS:PRIORITY"):
        call_command("offload", "worker", "--reserve", "many")


# -- queue limits ----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_per_server_queue_limit(burst):
    bulk_enqueue(tasks.span, [((f"d{i}",), {"sleep": 0.3}) for i in range(4)])
    bulk_enqueue(tasks.span.using(queue_name="emails"), [((f"e{i}",), {"sleep": 0.3}) for i in range(3)])
    burst("--processes", "1", "--threads", "4", "--queue-limit", "emails=1")
    emails = list(Run.objects.filter(key__startswith="e"))
    assert len(emails) == 3 and max_overlap(emails) == 1
    assert max_overlap(Run.objects.all()) >= 3  # other queues still ran alongside


@pytest.mark.django_db(transaction=True)
def test_cluster_wide_queue_limit_across_servers(start_worker):
    n = 10
    bulk_enqueue(tasks.crm_sync, [((f"c{i}",), {"sleep": 0.3}) for i in range(n)])
    for _ in range(2):
        start_worker("--backend", "limited", "--processes", "2", "--threads", "3", "--burst")
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() == n, timeout=60,
               message="all crm tasks done")
    runs = list(Run.objects.all())
    assert len(runs) == n
    assert max_overlap(runs) == 2  # QUEUE_LIMITS = {"crm": 2}, with 12 threads available


# -- periodic tasks --------------------------------------------------------------------

def test_schedule_validation():
    with pytest.raises(ValueError, match="cron expression"):
        parse_schedules({"x": {"task": "a.b", "cron": "every day"}})
    with pytest.raises(ValueError, match="timezone"):
        parse_schedules({"x": {"task": "a.b", "cron": "0 2 * * *", "timezone": "Mars/Base"}})
    with pytest.raises(ValueError, match="unknown key 'every'"):
        parse_schedules({"x": {"task": "a.b", "cron": "0 2 * * *", "every": 1}})


def test_occurrences_follow_the_time_zone():
    s = Periodic(name="n", task="a.b", cron="0 2 * * *", timezone="Europe/Paris")
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert s.latest(at) == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # 02:00 CEST
    assert s.following(at) == datetime(2026, 7, 2, 0, 0, tzinfo=UTC)
    assert due(s, datetime(2026, 6, 30, 0, 0, tzinfo=UTC), at) == s.latest(at)
    assert due(s, s.latest(at), at) is None
    skip = Periodic(name="n", task="a.b", cron="0 2 * * *", missed="skip")
    assert due(skip, datetime(2026, 6, 1, tzinfo=UTC), at) is None
    assert due(skip, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, 2, 0, 30, tzinfo=UTC))


@pytest.mark.django_db
def test_each_occurrence_is_enqueued_once_by_competing_schedulers():
    backend = task_backends["periodic"]
    t0 = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)  # schedule: every 2 seconds
    a, b = Scheduler(backend), Scheduler(backend)
    a.tick(t0)
    b.tick(t0)
    assert Schedule.objects.get(name="tick").last_run_at == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert not TaskRow.objects.exists()  # a new schedule starts with its next occurrence
    t1 = t0 + timedelta(seconds=2)
    a.tick(t1)
    b.tick(t1)
    assert TaskRow.objects.filter(backend="periodic").count() == 1
    t2 = t0 + timedelta(minutes=10)  # both were down: missed="once" catches up once
    b.tick(t2)
    a.tick(t2)
    assert TaskRow.objects.filter(backend="periodic").count() == 2


@pytest.mark.django_db(transaction=True)
def test_periodic_tasks_with_several_servers(start_worker):
    servers = [start_worker("--backend", "periodic", "--processes", "1", "--threads", "1")
               for _ in range(3)]
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() >= 3, timeout=30,
               message="three occurrences")
    for server in servers:
        server.signal(signal.SIGTERM)
    rows = TaskRow.objects.order_by("enqueued_at").values_list("enqueued_at", flat=True)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(rows)]
    assert gaps and min(gaps) > 1.0, gaps  # every 2 s: one task per occurrence, never two
