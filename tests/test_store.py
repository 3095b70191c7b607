"""The Store contract on whichever database is selected: leases, fencing, rescue, prune."""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.tasks import task_backends

from offload.models import TaskRow
from offload.store.base import Outcome, now
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store():
    return task_backends["default"].store


def claim(store, worker, limit=10, lease=30, at=None):
    return store.claim(backend="default", queues=["default", "emails", "reports"], limit=limit,
                       worker=worker, lease=lease, now=at or now())


def done(c, status="SUCCESSFUL"):
    return Outcome(c.id, c.token, status, now(), return_value="null")


def test_claim_sets_lease_and_holder(store):
    result = tasks.noop.enqueue()
    [c] = claim(store, "w1")
    row = TaskRow.objects.get(pk=result.id)
    assert (row.status, row.claimed_by, row.lease_token, row.attempts) == ("RUNNING", "w1", c.token, 1)
    assert row.lease_expires_at > now() + timedelta(seconds=29)
    assert claim(store, "w2") == []


def test_only_the_lease_holder_can_complete(store):
    """A worker whose lease expired while it was frozen cannot overwrite the newer attempt."""
    result = tasks.noop.enqueue()
    [old] = claim(store, "frozen", lease=1)
    later = now() + timedelta(seconds=5)
    rescued = store.rescue(backend="default", now=later, max_rescues=5)
    assert [r[0] for r in rescued] == [int(result.id)]
    [new] = claim(store, "fresh", at=later)
    assert new.token != old.token
    assert store.complete([done(old, "FAILED")]) == set()  # the late write is refused
    assert store.complete([done(new)]) == {new.id}
    row = TaskRow.objects.get(pk=result.id)
    assert row.status == "SUCCESSFUL" and row.worker_ids == "frozen,fresh" and row.rescues == 1


def test_heartbeat_keeps_the_lease(store):
    tasks.noop.enqueue()
    [c] = claim(store, "w1", lease=1)
    assert store.heartbeat(worker="w1", ids=[c.id], lease=60, now=now()) == 1
    assert store.rescue(backend="default", now=now() + timedelta(seconds=5), max_rescues=5) == []
    assert store.heartbeat(worker="someone-else", ids=[c.id], lease=60, now=now()) == 0


def test_rescue_by_worker_and_the_rescue_limit(store):
    result = tasks.noop.enqueue()
    for attempt in range(3):
        claim(store, f"w{attempt}")
        rows = store.rescue(backend="default", now=now(), max_rescues=2, worker=f"w{attempt}")
        assert [r[1] for r in rows] == ["READY" if attempt < 2 else "FAILED"]
    row = TaskRow.objects.get(pk=result.id)
    assert row.status == "FAILED" and "offload.exceptions.WorkerLost" in row.errors
    assert tasks.noop.get_result(result.id).errors[0].exception_class_path.endswith("WorkerLost")


def test_hand_back_keeps_the_place_in_line(store):
    first = tasks.noop.enqueue()
    tasks.noop.enqueue()
    [c] = claim(store, "w1", limit=1)
    assert c.id == int(first.id)
    assert store.hand_back(worker="w1") == [c.id]
    [again] = claim(store, "w2", limit=1)
    assert again.id == int(first.id)


def test_cycle_records_and_claims_in_one_call(store):
    a, b = tasks.noop.enqueue(), tasks.noop.enqueue()
    [ca] = claim(store, "w1", limit=1)
    accepted, claimed = store.cycle([done(ca)], {
        "backend": "default", "queues": ["default"], "limit": 5, "worker": "w1",
        "lease": 30, "now": now()})
    assert accepted == {int(a.id)} and [c.id for c in claimed] == [int(b.id)]


def test_statistics_count_exactly_the_accepted_outcomes(store):
    """A worker's observations (offload.stats.observe) are summed and added when every
    outcome is accepted; when one is refused (its lease is gone), only the accepted ones
    count. Either way offload_stat agrees with the rows."""
    from offload.models import TaskStat
    from offload.stats import STAT_BUCKETS, observe, stat_columns

    for _ in range(3):
        tasks.noop.enqueue()
    a, b, c = claim(store, "w1", limit=3)
    whole = [(done(a), a)]
    assert store.complete([o for o, _ in whole], worker="w1",
                          observed=observe("default", whole)) == {a.id}
    refused = Outcome(b.id, b.token + 1, "SUCCESSFUL", now(), return_value="null")
    mixed = [(done(c), c), (refused, b)]
    accepted, _ = store.cycle([o for o, _ in mixed], {
        "backend": "default", "queues": ["default"], "limit": 5, "worker": "w1",
        "lease": 30, "now": now()}, worker="w1", observed=observe("default", mixed))
    assert accepted == {c.id}
    rows = TaskRow.objects.filter(pk__in=[a.id, c.id])
    waits = [(r.last_attempted_at - r.available_at).total_seconds() for r in rows]
    runs = [(r.finished_at - r.last_attempted_at).total_seconds() for r in rows]
    expected = {"tasks": 2, "ran": 2, "wait_sum": pytest.approx(sum(waits), abs=1e-6),
                "run_sum": pytest.approx(sum(runs), abs=1e-6)}
    for kind, values in (("wait", waits), ("run", runs)):
        for le in STAT_BUCKETS:
            expected[f"{kind}_le_{round(le * 1000)}ms"] = sum(v <= le for v in values)
    stats = TaskStat.objects.filter(worker="w1", outcome="SUCCESSFUL")
    totals = {name: sum(getattr(s, name) for s in stats) for name in stat_columns()}
    assert totals == expected


def test_concurrent_claimers_never_share_a_task(store):
    from offload import bulk_enqueue

    bulk_enqueue(tasks.noop, [((), {})] * 400)
    taken, errors = [], []

    def claimer(name):
        try:
            while batch := claim(store, name, limit=7):
                taken.extend(c.id for c in batch)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(taken) == 400 and len(set(taken)) == 400


def test_prune_deletes_only_old_finished_tasks(store):
    old, recent, waiting = tasks.noop.enqueue(), tasks.noop.enqueue(), tasks.noop.enqueue()
    TaskRow.objects.filter(pk__in=[old.id, recent.id]).update(status="SUCCESSFUL")
    TaskRow.objects.filter(pk=old.id).update(finished_at=now() - timedelta(days=8))
    TaskRow.objects.filter(pk=recent.id).update(finished_at=now())
    assert store.prune(backend="default", before=now() - timedelta(days=7), batch=1) == 1
    assert set(TaskRow.objects.values_list("pk", flat=True)) == {int(recent.id), int(waiting.id)}


def test_runnable_ignores_paused_queues_and_future_tasks(store):
    from datetime import timedelta

    tasks.noop.using(run_after=now() + timedelta(hours=1)).enqueue()
    assert store.runnable(backend="default", queues=["default"], now=now()) is False
    tasks.noop.enqueue()
    assert store.runnable(backend="default", queues=["default"], now=now()) is True
    assert store.runnable(backend="default", queues=[], now=now()) is True
    store.pause(backend="default", queue="default", paused=True, now=now())
    assert store.runnable(backend="default", queues=["default"], now=now()) is False


def test_cap_aged_moves_tasks_to_the_ready_index(store):
    backend = task_backends["aged"]
    result = tasks.aged_logged.enqueue("x")
    assert TaskRow.objects.get(pk=result.id).age_key is not None
    later = now() + timedelta(seconds=51)  # AGE_CAP 50 at 1 point/s
    assert backend.store.cap_aged(backend="aged", now=now(), age_rate=1.0, age_cap=50) == 0
    assert backend.store.cap_aged(backend="aged", now=later, age_rate=1.0, age_cap=50) == 1
    assert TaskRow.objects.get(pk=result.id).age_key is None
