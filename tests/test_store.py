"""The store under load and the statistics a worker sums, on whichever database is
selected; each method's own contract is in tests/test_store_contract.py. Example::

    OFFLOAD_TEST_DB=postgres .venv/bin/python -m pytest tests/test_store.py -q
"""

import threading

import pytest
from django.db import connections
from django.tasks import task_backends

from offload.clock import now
from offload.models import TaskRow
from offload.store import Outcome
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store():
    return task_backends["default"].store


def claim(store, worker, limit=10, lease=30, at=None):
    return store.claim(backend="default", queues=["default", "emails", "reports"], limit=limit,
                       worker=worker, lease=lease, now=at or now())


def done(c, status="SUCCESSFUL", claimed=True):
    return Outcome(c.id, c.token, status, now(), return_value="null", claim=c if claimed else None)


@pytest.mark.parametrize("claimed", [True, False], ids=["from-claims", "from-rows"])
def test_statistics_count_exactly_the_accepted_outcomes(store, claimed):
    """A worker's outcomes, which carry their claims, are observed from them
    (offload.stats.observe), summed and added when every outcome is accepted; when one
    is refused (its lease is gone), only the accepted ones count. Outcomes without
    their claims are counted from the rows. Either way offload_series agrees with the
    rows, and both ways compute the same sums."""
    from offload.models import TaskStat
    from offload.stats import STAT_BUCKETS, stat_columns

    for _ in range(3):
        tasks.noop.enqueue()
    a, b, c = claim(store, "w1", limit=3)
    assert store.complete([done(a, claimed=claimed)], worker="w1") == {a.id}
    refused = Outcome(b.id, b.token + 1, "SUCCESSFUL", now(), return_value="null",
                      claim=b if claimed else None)
    accepted, _ = store.cycle([done(c, claimed=claimed), refused], {
        "backend": "default", "queues": ["default"], "limit": 5, "worker": "w1",
        "lease": 30, "now": now()}, worker="w1")
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


@pytest.mark.skipif(connections["default"].vendor != "sqlite", reason="SQLite's write lock")
def test_an_enqueue_on_its_own_waits_for_the_write_lock_in_its_own_steps(store):
    """An enqueue outside a transaction waits for SQLite's write lock by trying again in
    short steps (SqliteStore._waiting_finely) instead of in SQLite's busy handler: held by
    another connection, the enqueue neither fails nor goes ahead; released, it is
    written; and the connection's busy timeout is what it was."""
    import sqlite3

    holder = sqlite3.connect(connections["default"].settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # takes the write lock
    done, errors, timeouts = [], [], []

    def enqueue():
        try:
            store.prepare()  # this thread's connection gets Offload's settings
            done.append(tasks.noop.enqueue().id)
            with connections["default"].cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout")
                timeouts.append(cursor.fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=enqueue)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not errors  # waiting, not failed (busy_timeout is 0 meanwhile)
    holder.execute("COMMIT")
    holder.close()
    thread.join(10)
    assert not errors and len(done) == 1 and TaskRow.objects.filter(pk=done[0]).exists()
    assert timeouts == [10000]
