"""Operations: the status CLI, the admin's retry/cancel/re-enqueue, and the queries."""

import io

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command

from offload.dashboard import queries
from offload.models import TaskRow
from offload.testing import run_until_empty
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_summary_groups_queues_by_priority_band():
    tasks.add.enqueue(1, 1)  # emails, priority 10 -> high
    tasks.noop.using(priority=80).enqueue()
    tasks.noop.using(priority=-80).enqueue()
    failed = tasks.boom.enqueue()
    run_until_empty(max_tasks=1)  # the priority-80 noop
    rows = {(r["queue"], r["band"]): r for r in queries.summary()}
    assert rows[("emails", "high")]["ready"] == 1
    assert rows[("default", "bulk")]["ready"] == 1 and rows[("default", "bulk")]["oldest_wait_s"] >= 0
    run_until_empty()
    assert {(r["queue"], r["band"]): r["failed"] for r in queries.summary()}[("default", "normal")] == 1
    assert [t.pk for t in queries.failures()] == [int(failed.id)]


@pytest.mark.django_db(databases=["default", "tasks"])  # the metrics read every task database
def test_tasks_waiting_on_a_full_key_are_counted_as_such():
    """Tasks set aside for a full concurrency key show as waiting on a key, not as
    ready, in the summary (the dashboard, status) and the metrics."""
    from django.tasks import task_backends

    from offload.clock import now
    from offload.metrics import OffloadCollector

    keyed = tasks.noop.using(concurrency_key="application:42")
    keyed.enqueue()
    task_backends["default"].store.claim(backend="default", queues=[], limit=1, worker="w1",
                                         lease=60, now=now())  # the holder runs
    for _ in range(3):
        keyed.enqueue()
    tasks.noop.enqueue()
    [row] = [r for r in queries.summary() if r["queue"] == "default"]
    assert (row["ready"], row["waiting_key"], row["running"]) == (1, 3, 1)
    [depth] = [f for f in OffloadCollector().collect() if f.name == "offload_queue_depth"]
    by_state = {s.labels["state"]: s.value for s in depth.samples if s.labels["queue"] == "default"}
    assert (by_state["ready"], by_state["waiting_key"]) == (1, 3)


@pytest.mark.django_db(databases=["default", "tasks"])  # the metrics read every task database
def test_tasks_waiting_for_a_rate_limit_turn_are_counted_as_such():
    """Tasks given a later turn by a rate limit show as waiting on a rate limit, not as
    scheduled, in the summary and the metrics; a task due later for its own reason is
    still scheduled."""
    from datetime import timedelta

    from django.tasks import task_backends

    from offload.clock import now
    from offload.metrics import OffloadCollector

    for _ in range(4):
        tasks.noop.using(rate_limit="1/m").enqueue()
    tasks.noop.using(run_after=now() + timedelta(hours=1)).enqueue()
    task_backends["default"].store.claim(backend="default", queues=[], limit=10, worker="w1",
                                         lease=60, now=now())  # one token; three turns
    [row] = [r for r in queries.summary() if r["queue"] == "default"]
    assert (row["running"], row["waiting_rate"], row["scheduled"]) == (1, 3, 1)
    [depth] = [f for f in OffloadCollector().collect() if f.name == "offload_queue_depth"]
    by_state = {s.labels["state"]: s.value for s in depth.samples if s.labels["queue"] == "default"}
    assert (by_state["waiting_rate"], by_state["scheduled"]) == (3, 1)
    out = io.StringIO()
    call_command("offload", "status", stdout=out)
    assert "on a rate" in out.getvalue()


@pytest.mark.django_db(databases=["default", "tasks"])  # servers of every task database
def test_status_command_prints_the_summary():
    tasks.noop.enqueue()
    out = io.StringIO()
    call_command("offload", "status", stdout=out)
    assert "Queues (default)" in out.getvalue() and "default" in out.getvalue()


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def _action(client, action, ids):
    return client.post("/admin/offload/taskrow/", {"action": action, "_selected_action": ids},
                       follow=True)


def test_admin_retry_cancel_and_re_enqueue(staff_client):
    failed = tasks.boom.enqueue("x")
    run_until_empty()
    waiting = tasks.noop.enqueue()
    _action(staff_client, "retry", [failed.id])
    assert TaskRow.objects.get(pk=failed.id).status == "READY"
    _action(staff_client, "cancel", [waiting.id])
    row = TaskRow.objects.get(pk=waiting.id)
    assert row.status == "FAILED" and "offload.exceptions.Cancelled" in row.errors
    response = _action(staff_client, "re_enqueue", [waiting.id])
    assert b"Enqueued 1 new task" in response.content
    assert TaskRow.objects.filter(task_path=row.task_path, status="READY").count() == 1
    assert LogEntry.objects.filter(change_message__in=["Retried", "Cancelled"]).count() == 2


def test_admin_refuses_non_staff(client):
    User.objects.create_user("visitor", password="pw")
    client.login(username="visitor", password="pw")
    assert client.get("/admin/offload/taskrow/").status_code == 302  # to the login page


def test_dashboard_shows_and_acts(staff_client):
    failed = tasks.boom.enqueue("kaput")
    run_until_empty()
    waiting = tasks.noop.enqueue()
    page = staff_client.get("/offload/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "builtins.ValueError" in body and "kaput" in body and f'data-task="{failed.id}"' in body
    response = staff_client.post("/offload/act/", {"action": "retry", "task": failed.id}, follow=True)
    assert f"Task {failed.id} will run again." in response.content.decode()
    staff_client.post("/offload/act/", {"action": "cancel", "task": waiting.id})
    staff_client.post("/offload/act/", {"action": "pause", "queue": "emails"})
    assert "Resume emails" in staff_client.get("/offload/").content.decode()
    assert TaskRow.objects.get(pk=waiting.id).status == "FAILED"
    assert staff_client.post("/offload/act/", {"action": "pause", "queue": "nope"}).status_code == 400



def test_dashboard_lists_running_tasks_and_asks_one_to_stop(staff_client):
    """A task a worker runs (claimed here as a worker would) shows under "Running now";
    Cancel asks its worker to stop it, and the page says so."""
    from django.tasks import task_backends

    from offload.clock import now

    running = tasks.noop.enqueue()
    task_backends["default"].store.claim(backend="default", queues=[], limit=1, worker="w1",
                                         lease=60, now=now())
    body = staff_client.get("/offload/").content.decode()
    section = body[body.index('id="running"'):body.index('id="waiting"')]
    assert f'data-task="{running.id}"' in section and 'value="cancel"' in section
    response = staff_client.post("/offload/act/", {"action": "cancel", "task": running.id}, follow=True)
    assert f"Task {running.id} asked to stop" in response.content.decode()
    row = TaskRow.objects.get(pk=running.id)
    assert row.status == "RUNNING" and "Cancelled" in row.cancel_error
    assert LogEntry.objects.filter(change_message="Asked to stop (cancel)").count() == 1
    section = staff_client.get("/offload/").content.decode()
    assert "(asked to stop)" in section

def test_dashboard_is_staff_only_and_csrf_protected(client):
    from django.test import Client

    User.objects.create_user("visitor", password="pw")
    client.login(username="visitor", password="pw")
    assert client.get("/offload/").status_code == 302
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.create_superuser("ops2", "o@example.com", "pw"))
    assert strict.post("/offload/act/", {"action": "pause", "queue": "emails"}).status_code == 403


def _metrics(client, **headers):
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


@pytest.mark.django_db(databases="__all__")
def test_metrics_match_the_database_and_survive_pruning(client):
    from datetime import timedelta

    from django.tasks import task_backends

    from offload.clock import now

    for i in range(3):
        tasks.add.enqueue(i, i)  # emails
    tasks.boom.enqueue()
    tasks.flaky.enqueue(succeed_on=2)  # one retry
    tasks.noop.using(priority=-80).enqueue()
    run_until_empty(max_tasks=6)  # leaves the bulk noop... and runs the rest
    auth = {"HTTP_AUTHORIZATION": "Bearer scrape-me"}
    m = _metrics(client, **auth)
    key = lambda name, **labels: (name, tuple(sorted(labels.items())))  # noqa: E731
    assert m[key("offload_tasks_finished_total", backend="default", queue="emails", status="SUCCESSFUL")] == 3
    assert m[key("offload_tasks_finished_total", backend="default", queue="default", status="FAILED")] == 1
    assert m[key("offload_task_retries_total", backend="default", queue="default")] == 1
    expected = TaskRow.objects.filter(status="READY").count()
    ready = sum(v for (name, labels), v in m.items()
                if name == "offload_queue_depth" and ("state", "ready") in labels)
    assert ready == expected == 1
    # Pruning moves the totals into offload_counter: counters do not go backwards.
    task_backends["default"].store.prune(backend="default", before=now() + timedelta(days=1))
    assert not TaskRow.objects.filter(status__in=["SUCCESSFUL", "FAILED"]).exists()
    after = _metrics(client, **auth)
    for name in ("offload_tasks_finished_total", "offload_task_retries_total"):
        assert {k: v for k, v in after.items() if k[0] == name} == {k: v for k, v in m.items() if k[0] == name}


@pytest.mark.django_db(databases="__all__")
def test_metrics_need_the_token_or_staff(client):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(User.objects.create_superuser("ops3", "o@example.com", "pw"))
    assert client.get("/metrics").status_code == 200


def _expected_histograms():
    """Wait and run histograms computed from the task rows, as the metrics define them."""
    from offload.stats import STAT_BUCKETS

    expected = {}
    rows = TaskRow.objects.filter(status__in=["SUCCESSFUL", "FAILED"], last_attempted_at__isnull=False)
    for row in rows:
        key = (row.queue_name, queries.band_of(row.priority))
        h = expected.setdefault(key, {"wait": [], "run": []})
        h["wait"].append((row.last_attempted_at - row.available_at).total_seconds())
        h["run"].append((row.finished_at - row.last_attempted_at).total_seconds())
    samples = {}
    for (queue, band), h in expected.items():
        labels = {"backend": "default", "queue": queue, "band": band}
        for kind, values in h.items():
            name = f"offload_task_{kind}_seconds"
            for le in STAT_BUCKETS:
                samples[(f"{name}_bucket", tuple(sorted({**labels, "le": str(le)}.items())))] = \
                    sum(v <= le for v in values)
            samples[(f"{name}_bucket", tuple(sorted({**labels, "le": "+Inf"}.items())))] = len(values)
            samples[(f"{name}_count", tuple(sorted(labels.items())))] = len(values)
            samples[(f"{name}_sum", tuple(sorted(labels.items())))] = pytest.approx(sum(values), abs=1e-5)
    return samples


@pytest.mark.process
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_histograms_match_the_database_and_survive_pruning(client, burst):
    """Two worker processes run a mix (queues, bands, a failure, a retry, a deferred and a
    cancelled task); the wait/run histograms, counters and dashboard agree with the rows,
    and stay the same after the tasks are pruned and the statistics folded."""
    from datetime import timedelta

    from django.tasks import task_backends

    from offload.clock import now
    from offload.models import TaskStat
    from offload.stats import TOTALS_MINUTE

    for i, (priority, sleep) in enumerate([(80, 0), (80, 0.03), (0, 0.3), (0, 0), (-80, 0.06),
                                           (-80, 0.6), (20, 0.01), (20, 0)]):
        tasks.logged.using(priority=priority).enqueue(f"k{i}", sleep=sleep)
    for i in range(4):
        tasks.add.enqueue(i, i)  # emails, high
    tasks.boom.enqueue()
    tasks.flaky.enqueue(succeed_on=2)  # one retry
    tasks.noop.using(run_after=now() + timedelta(seconds=0.5)).enqueue()
    cancelled = tasks.noop.using(priority=-80).enqueue()
    task_backends["default"].store.cancel(backend="default", ids=[int(cancelled.id)], now=now(),
                                          reason="not needed")
    burst("--processes", "2", "--threads", "2")
    assert not TaskRow.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).exists()
    assert TaskStat.objects.values("worker").distinct().count() >= 2  # both processes and ""

    auth = {"HTTP_AUTHORIZATION": "Bearer scrape-me"}
    m = _metrics(client, **auth)
    expected = _expected_histograms()
    histogram = {k: v for k, v in m.items() if k[0].startswith(("offload_task_wait", "offload_task_run"))}
    assert histogram == expected
    key = lambda name, **labels: (name, tuple(sorted(labels.items())))  # noqa: E731
    assert m[key("offload_tasks_finished_total", backend="default", queue="default", status="FAILED")] == 2
    assert m[key("offload_tasks_finished_total", backend="default", queue="default", status="SUCCESSFUL")] == 10
    assert m[key("offload_task_retries_total", backend="default", queue="default")] == 1
    # The dashboard reads the same statistics: per minute, and the waits by band.
    assert sum(ok + failed for _, ok, failed in queries.throughput()) == 16
    waits = {w["band"]: w for w in queries.waits_by_band()}
    assert waits["urgent"]["tasks"] == 2 and waits["bulk"]["tasks"] == 2  # not the cancelled one

    store = task_backends["default"].store
    store.prune(backend="default", before=now() + timedelta(days=1))
    store.fold_stats(backend="default", before=now() + timedelta(days=1),
                     hours_before=now() + timedelta(days=1))
    assert not TaskRow.objects.exists()
    assert set(TaskStat.objects.values_list("minute", "worker").distinct()) == {(TOTALS_MINUTE, "")}
    after = _metrics(client, **auth)
    counted = ("offload_tasks_finished_total", "offload_task_retries_total",
               "offload_task_wait_seconds", "offload_task_run_seconds")
    # The same series and counts; sums equal up to the order they were added in.
    assert {k: v for k, v in after.items() if k[0].startswith(counted)} == \
        pytest.approx({k: v for k, v in m.items() if k[0].startswith(counted)}, rel=1e-9)
    assert {k: v for k, v in after.items() if k[0].startswith(counted[2:])} == expected
