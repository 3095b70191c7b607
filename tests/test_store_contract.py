"""The store's contract (``offload.store.contract.Store``), method by method, on the engine
of this pass: the suite runs once with ``OFFLOAD_TEST_DB=sqlite`` and once with
``postgres``, against the real test database. Tasks are written with ``store.enqueue``
and read back with the ORM, so each test pins what one store method promises.
Concurrency and the statistics a worker sums stay in tests/test_store.py. Example::

    OFFLOAD_TEST_DB=postgres .venv/bin/python -m pytest tests/test_store_contract.py -q
"""

import inspect
import itertools
import json
import re
from datetime import timedelta

import pytest
from django.db import connections
from django.tasks import task_backends

from offload.clock import now
from offload.models import LegacyStat, QueueState, RateBucket, Server, TaskRow, TaskStat
from offload.stats import HOURS_WORKER, TOTALS_MINUTE
from offload.store import Claimed, Outcome, Store
from offload.store.queries import ENGINES, SQL_DIR, path, query

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "tests.testapp.tasks.noop"
PAYLOAD = '{"args": [], "kwargs": {}}'
B = "default"


#: An enqueue row's flow-control fields, none set (concurrency, rate, fair).
NO_FLOW = (None,) * 6


@pytest.fixture
def store():
    return task_backends[B].store


def put(store, *rows, at=None, age_rate=0.0, backend=B):
    """Enqueue ``rows`` of (queue, priority[, run_after[, unique_key[, concurrency_key[,
    concurrency_limit[, rate_key[, rate_interval[, rate_burst[, fair_key]]]]]]]]); their ids."""
    full = [(r[0], r[1], PATH, PAYLOAD, *(r[2:] + (None,) * 8)[:8]) for r in rows]
    return [id_ for id_, _ in store.enqueue(backend, full, now=at or now(), age_rate=age_rate)]


def take(store, worker="w1", limit=10, at=None, lease=30, **kw):
    kw.setdefault("queues", ["default", "emails"])
    return store.claim(backend=B, limit=limit, worker=worker, lease=lease, now=at or now(), **kw)


def done(c, status="SUCCESSFUL", **kw):
    return Outcome(c.id, c.token, status, now(), return_value="null", **kw)


def row(id_):
    return TaskRow.objects.get(pk=id_)


# -- the contract itself ---------------------------------------------------------------

def test_the_engine_implements_the_protocol(store):
    assert isinstance(store, Store) and store.engine in ENGINES and store.db_alias == "default"
    for name, declared in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_"):
            continue
        params = inspect.signature(getattr(store, name)).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue  # PostgresStore.claim(**claim) hands them to _claim_params
        wanted = [p for p in inspect.signature(declared).parameters if p != "self"]
        assert list(params) == wanted, name


def test_every_query_loads_with_one_placeholder_style():
    """Every named query assembles (includes resolved) on both engines, with only
    %(name)s placeholders, and each shared predicate is written once per engine."""
    for engine in ENGINES:
        names = {p.stem for d in (engine, "common") for p in (SQL_DIR / d).glob("*.sql")}
        for name in names:
            text = query(engine, name)
            assert not re.search(r"\{\w+\}|(?<!%)%s|\?", text), (engine, name)
        fence = "s.state <> 'running'"
        for name in ("claim", "claim_limited"):
            assert query(engine, name).count(fence) >= 1
        written = [p for d in (engine, "common") for p in (SQL_DIR / d).glob("*.sql")
                   if fence in p.read_text()]
        assert [p.name for p in written] == ["claimable.sql"]
    with pytest.raises(LookupError):
        query("sqlite", "no_such_query")


# -- enqueue ---------------------------------------------------------------------------

def test_enqueue_returns_ids_in_order_and_sets_the_row(store):
    later = now() + timedelta(hours=1)
    at = now()
    ids = put(store, ("default", 0), ("emails", 10, later), at=at)
    assert ids[0] < ids[1]
    first, second = row(ids[0]), row(ids[1])
    assert (first.status, first.queue_name, first.priority, first.attempts) == ("READY", "default", 0, 0)
    assert first.available_at == first.enqueued_at == at and first.run_after is None
    assert second.available_at == second.run_after == later
    assert first.age_key is None


def test_enqueue_keeps_one_pending_task_per_unique_key(store):
    [held] = put(store, ("default", 0, None, "k1"))
    result = store.enqueue(B, [("default", 0, PATH, PAYLOAD, None, "k1", *NO_FLOW),
                               ("default", 0, PATH, PAYLOAD, None, "k2", *NO_FLOW),
                               ("default", 0, PATH, PAYLOAD, None, "k2", *NO_FLOW)], now=now())
    k2 = result[1][0]
    assert result == [(held, False), (k2, True), (k2, False)]
    assert store.pending(B, ["k1", "k2", "k3"]) == {"k1": held, "k2": k2}
    TaskRow.objects.filter(pk=held).update(status="SUCCESSFUL")  # no longer holds k1
    [(again, created)] = store.enqueue(B, [("default", 0, PATH, PAYLOAD, None, "k1", *NO_FLOW)], now=now())
    assert created and again != held


def test_enqueue_with_ageing_stores_the_age_key(store):
    from offload.ageing import age_key

    at = now()
    [id_] = put(store, ("default", 5), at=at, age_rate=0.5)
    assert row(id_).age_key == pytest.approx(age_key(5, at, 0.5))


def test_lists_and_rows_are_parameters_not_sql(store):
    """Odd queue names and thousands of ids go through as one parameter each."""
    odd = ["o'neil", 'say "hi"', "ü%s?{x}"]
    ids = put(store, *[(q, 0) for q in odd])
    assert sorted(c.queue_name for c in take(store, queues=odd[:2])) == sorted(odd[:2])
    assert [c.queue_name for c in take(store, queues=[], exclude=odd[:2])] == [odd[2]]
    many = put(store, *[("default", 0)] * 3000)
    claimed = take(store, worker="bulk", limit=3000)
    assert len(claimed) == 3000
    assert store.heartbeat(worker="bulk", ids=[c.id for c in claimed], lease=60, now=now()) == 3000
    assert len(store.hand_back(worker="bulk")) == 3000
    assert len(store.cancel(backend=B, ids=many, now=now(), reason="test")) == 3000
    assert len(ids) == 3


# -- claim -----------------------------------------------------------------------------

def test_claim_orders_by_priority_then_age(store):
    t0 = now() - timedelta(minutes=5)
    low_old = put(store, ("default", -5), at=t0)[0]
    high_new = put(store, ("default", 20), at=t0 + timedelta(minutes=2))[0]
    high_old = put(store, ("default", 20), at=t0 + timedelta(minutes=1))[0]
    mid = put(store, ("emails", 0), at=t0)[0]
    order = [high_old, high_new, mid, low_old]
    assert [c.id for _ in order for c in take(store, limit=1)] == order
    for id_ in order:
        TaskRow.objects.filter(pk=id_).update(status="READY")
    # One claim takes the same tasks; it returns them by priority, then id.
    claimed = take(store, worker="w2", limit=3)
    assert [c.id for c in claimed] == [high_new, high_old, mid]
    assert all(isinstance(c, Claimed) for c in claimed)


def test_claim_sets_the_lease_and_returns_the_row(store):
    [id_] = put(store, ("default", 3))
    at = now()
    [c] = take(store, worker="w1", at=at, lease=30)
    r = row(id_)
    assert (r.status, r.claimed_by, r.lease_token, r.attempts, r.worker_ids) == (
        "RUNNING", "w1", c.token, 1, "w1")
    assert r.lease_expires_at == at + timedelta(seconds=30)
    assert r.started_at == r.last_attempted_at == c.claimed_at == c.started_at == at
    assert (c.task_path, c.payload, c.priority, c.queue_name) == (PATH, PAYLOAD, 3, "default")
    assert c.available_at == r.available_at
    assert take(store, worker="w2") == []


def test_claim_limits(store):
    """limit, queues, exclude, min_priority, not yet available, paused, the server fence."""
    put(store, *[("default", 0)] * 3, ("emails", 0), ("reports", 60))
    put(store, ("default", 99, now() + timedelta(hours=1)))
    assert len(take(store, limit=2, queues=["default"])) == 2
    assert [c.queue_name for c in take(store, queues=[], exclude=["default", "emails"])] == ["reports"]
    assert take(store, queues=["emails"], min_priority=10) == []
    store.pause(backend=B, queue="emails", paused=True, now=now())
    assert take(store, queues=["emails"]) == []
    Server.objects.create(id="srv", host="h", pid=1, role="async", release="r", started_at=now(),
                          heartbeat_at=now(), state=Server.RETIRING)
    assert take(store, server="srv") == []  # the release fence
    Server.objects.filter(id="srv").update(state=Server.RUNNING)
    assert [c.queue_name for c in take(store, server="srv")] == ["default"]
    store.pause(backend=B, queue="emails", paused=False, now=now())
    assert [c.queue_name for c in take(store, server="srv")] == ["emails"]


def test_claim_with_ageing_lets_old_tasks_overtake(store):
    t0 = now()
    old_low = put(store, ("default", 0), at=t0 - timedelta(seconds=30), age_rate=1.0)[0]
    new_high = put(store, ("default", 20), at=t0, age_rate=1.0)[0]
    ageing = dict(at=t0, age_rate=1.0, age_cap=50, limit=1)
    assert [c.id for c in take(store, **ageing)] == [old_low]  # 0 + 30 s > 20 + 0 s
    assert [c.id for c in take(store, **ageing)] == [new_high]


def test_claim_limited_counts_what_runs_anywhere(store):
    put(store, *[("default", 0)] * 4)
    kw = dict(backend=B, queue="default", cluster_max=3, lease=30, now=now())
    assert len(store.claim_limited(limit=2, worker="w1", **kw)) == 2
    assert len(store.claim_limited(limit=5, worker="w2", **kw)) == 1
    assert store.claim_limited(limit=5, worker="w3", **kw) == []
    store.pause(backend=B, queue="default", paused=True, now=now())
    store.hand_back(worker="w2")
    assert store.claim_limited(limit=5, worker="w3", **kw) == []



# -- concurrency keys (docs/flow-control.md) -------------------------------------------

def keyed(key, limit=1, priority=0, queue="default"):
    return (queue, priority, None, None, key, limit)


def test_a_full_key_waits_and_frees_when_its_holder_finishes(store):
    first, second, _ = put(store, *[keyed("app:1")] * 3)
    other, free = put(store, keyed("app:2"), ("default", 0))
    claimed = take(store)
    assert sorted(c.id for c in claimed) == sorted([first, other, free])  # one per key
    assert {c.id: c.concurrency_key for c in claimed}[first] == "app:1"
    assert take(store, worker="w2") == []  # both keys full: nothing else may start
    assert row(second).key_waiting  # set aside while its key is full: out of the claim's way
    store.complete([done(next(c for c in claimed if c.id == first))])
    assert store.unpark(backend=B, keys=["app:1"]) == 1  # what the worker does next
    assert not row(second).key_waiting and row(_).key_waiting  # room for one: the best one
    assert [c.id for c in take(store, worker="w2")] == [second]  # the next in line



def test_enqueue_puts_in_line_only_what_a_key_has_room_for(store):
    """A batch of a key's tasks: as many as its limit stay in the claim's indexes, best
    first; the others are set aside at once (no claim ever passes over them)."""
    ids = put(store, keyed("k", limit=2, priority=0), keyed("k", limit=2, priority=50),
              *[keyed("k", limit=2)] * 3, ("default", 0))
    waiting = dict(TaskRow.objects.filter(pk__in=ids).values_list("pk", "key_waiting"))
    assert [waiting[i] for i in ids] == [False, False, True, True, True, False]
    assert {c.id for c in take(store, limit=2)} == {ids[0], ids[1]}  # the key is full now
    [late] = put(store, keyed("k", limit=2))
    assert row(late).key_waiting  # set aside at once

def test_a_key_admits_up_to_its_limit_in_one_claim_and_across_claims(store):
    ids = put(store, *[keyed("report", limit=2)] * 5)
    assert [c.id for c in take(store, limit=1)] == ids[:1]
    assert [c.id for c in take(store, worker="w2")] == ids[1:2]  # room for one more
    assert take(store, worker="w3") == []
    assert row(ids[2]).status == "READY"


def test_a_full_key_never_stands_in_front_of_other_work(store):
    """20 urgent tasks of a full key above one plain task: a claim of one takes the
    plain task (the scan passes over the full key), not nothing."""
    [holder] = put(store, keyed("hot", priority=90))
    assert [c.id for c in take(store, limit=1)] == [holder]
    put(store, *[keyed("hot", priority=90)] * 20)  # enqueued while full: set aside at once
    [plain] = put(store, ("default", 0))
    assert [c.id for c in take(store, worker="w2", limit=1)] == [plain]
    assert TaskRow.objects.filter(concurrency_key="hot", key_waiting=True).count() == 20
    store.hand_back(worker="w1")  # the holder is READY again: the key has room
    assert store.unpark_waiting(backend=B) == 1  # maintenance brings one back: room for one
    [again] = take(store, worker="w3", limit=1)
    assert again.id == holder  # the first in line; the key is full again...
    assert TaskRow.objects.filter(concurrency_key="hot", key_waiting=True).count() == 20  # ...all aside


def test_keys_are_shared_across_tasks_and_kept_by_priority(store):
    low, high = put(store, keyed("app:7", priority=0), keyed("app:7", priority=50))
    assert [c.id for c in take(store)] == [high]
    assert row(low).status == "READY"


def test_a_rescue_or_hand_back_frees_the_key(store):
    a, b = put(store, keyed("app:3"), keyed("app:3"))
    take(store, worker="dead", lease=300)
    assert take(store, worker="w2") == []
    store.rescue(backend=B, now=now(), max_rescues=5, worker="dead")
    [c] = take(store, worker="w2")
    assert c.id == a  # rescued, it keeps its place in line
    store.hand_back(worker="w2")
    assert [c.id for c in take(store, worker="w3")] == [a]
    assert row(b).status == "READY"


def test_claim_limited_admits_keys_too(store):
    a, b, c = put(store, keyed("k"), keyed("k"), ("default", 0))
    kw = dict(backend=B, queue="default", cluster_max=3, lease=30, now=now())
    assert sorted(x.id for x in store.claim_limited(limit=3, worker="w1", **kw)) == [a, c]
    assert store.claim_limited(limit=3, worker="w2", **kw) == []
    assert row(b).status == "READY"


def test_cycle_admits_keys_and_the_next_claim_sees_the_freed_slot(store):
    a, b = put(store, keyed("k"), keyed("k"))
    [ca] = take(store, limit=1)
    claim = {"backend": B, "queues": ["default"], "limit": 5, "worker": "w1", "lease": 30}
    accepted, claimed = store.cycle([done(ca)], {**claim, "now": now()})
    assert accepted == {a}  # the claim riding with it saw a still running: b waits...
    store.unpark(backend=B, keys=["k"])
    assert [x.id for x in claimed + take(store)] == [b]  # ...for the next claim at most


def test_a_key_whose_worker_died_before_unparking_is_found_by_maintenance(store):
    a, b, c = put(store, keyed("k", limit=2), keyed("k", limit=2), keyed("k", limit=2))
    take(store, worker="dead", limit=2)
    assert row(c).key_waiting and store.waiting_keys(backend=B) == []  # full: nothing to do
    store.rescue(backend=B, now=now(), max_rescues=5, worker="dead")  # no unpark after it
    assert store.waiting_keys(backend=B) == ["k"]
    assert store.unpark_waiting(backend=B) == 1
    assert store.waiting_keys(backend=B) == [] and not row(c).key_waiting
    assert len(take(store, worker="w2")) == 2  # a (rescued) and b; c once one finishes


# -- rate limits (docs/flow-control.md#rate-limits) --------------------------------------

def rated(bucket, per_second, burst=1, priority=0, queue="default"):
    return (queue, priority, None, None, None, None, bucket, 1 / per_second, burst)


def test_a_rate_limit_admits_its_burst_and_gives_the_rest_turns_one_interval_apart(store):
    """10/s with a burst of 3: three start at once; the other two get turns 0.1 s apart
    from the bucket's next token, in order, and are not claimed before their turn."""
    t0 = now()
    ids = put(store, *[rated("api", 10, burst=3) for _ in range(5)], at=t0)
    assert sorted(c.id for c in take(store, at=t0)) == ids[:3]
    for id_, turn in zip(ids[3:], (0.1, 0.2), strict=True):
        r = row(id_)
        assert r.rate_paced and r.status == "READY"
        assert abs((r.available_at - t0).total_seconds() - turn) < 0.002
    assert take(store, at=t0 + timedelta(seconds=0.09)) == []
    assert [c.id for c in take(store, at=t0 + timedelta(seconds=0.101))] == [ids[3]]
    assert [c.id for c in take(store, at=t0 + timedelta(seconds=0.25))] == [ids[4]]


def test_a_late_task_of_an_empty_bucket_waits_behind_its_turns_and_others_pass(store):
    """A task enqueued while the bucket's turns run to 0.2 s gets the next turn; a task
    without a rate limit (or of another bucket) is claimed at once meanwhile."""
    t0 = now()
    a, b, c = put(store, *[rated("api", 10) for _ in range(3)], at=t0)
    assert [x.id for x in take(store, at=t0)] == [a]
    late, = put(store, rated("api", 10, priority=50), at=t0 + timedelta(seconds=0.01))
    plain, other = put(store, ("default", 0), rated("other", 10), at=t0 + timedelta(seconds=0.01))
    assert {x.id for x in take(store, at=t0 + timedelta(seconds=0.02))} == {plain, other}
    assert abs((row(late).available_at - t0).total_seconds() - 0.3) < 0.002
    # Due together at 0.35 s (the claims came late), they start an interval apart, best
    # first.
    assert [x.id for x in take(store, at=t0 + timedelta(seconds=0.35))] == [late]
    assert [x.id for x in take(store, at=t0 + timedelta(seconds=0.401))] == [b]
    assert [x.id for x in take(store, at=t0 + timedelta(seconds=0.501))] == [c]


def test_turns_claimed_late_still_start_apart(store):
    """Starts are counted when a task is claimed. Turns that fall due together, because
    the claims came late (a loaded machine), start no closer than half an interval
    (20/s: 25 ms): the later ones move on from the last start (docs/flow-control.md)."""
    t0 = now()
    ids = put(store, *[rated("api", 20) for _ in range(6)], at=t0)
    starts = {}
    for at in (0, 0.13, 0.131, 0.15, 0.16, 0.2, 0.26, 0.3, 0.45, 0.6):
        for c in take(store, at=t0 + timedelta(seconds=at)):
            starts[c.id] = at
    assert sorted(starts) == ids
    times = sorted(starts.values())
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.025, times
    assert store.next_turn(backend=B, now=t0) is None  # no turn left behind


def test_a_retried_rate_limited_task_takes_a_new_token(store):
    t0 = now()
    a, = put(store, rated("api", 1), at=t0)
    [ca] = take(store, at=t0)
    assert ca.rate_key == "api"
    store.complete([done(ca, status="READY", available_at=t0)])  # a retry, due at once
    assert take(store, at=t0 + timedelta(seconds=0.5)) == []  # the bucket's next token: t0 + 1 s
    assert abs((row(a).available_at - t0).total_seconds() - 1.0) < 0.002 and row(a).rate_paced
    assert [x.id for x in take(store, at=t0 + timedelta(seconds=1.001))] == [a]


def test_a_turn_moves_an_ageing_task_s_age_key_with_it(store):
    """With ageing on, a task given a later turn ages from its turn, as a task enqueued
    to run then would (age_key = priority - AGE_RATE * epoch(available_at))."""
    t0 = now()
    a, b = put(store, rated("api", 10), rated("api", 10), at=t0, age_rate=1.0)
    take(store, at=t0, age_rate=1.0, age_cap=100)
    turn = row(b)
    assert turn.rate_paced and abs(turn.age_key - (0 - turn.available_at.timestamp())) < 1e-3


def test_full_buckets_are_forgotten(store):
    t0 = now()
    put(store, rated("api", 10), rated("api", 10), at=t0)
    take(store, at=t0)
    assert RateBucket.objects.filter(key="api").exists()
    assert store.forget_buckets(backend=B, now=t0) == 0  # not full yet: 0.2 s of debt
    assert store.forget_buckets(backend=B, now=t0 + timedelta(seconds=1)) == 1
    assert store.next_turn(backend=B, now=t0) is not None


# -- fair sharing (docs/flow-control.md#fair-sharing) ---------------------------------

def fair(key, priority=0):
    return ("default", priority, None, None, None, None, None, None, None, key)


def test_fair_keys_take_turns_within_a_priority(store):
    """Tenant a's burst of 6 is in line before b's 2 and c's 1: claims rotate a, b, c,
    a, b, a... instead of taking a's whole burst first; a higher priority still comes
    first, and a task without a fair key before every turn of its priority."""
    a = put(store, *[fair("tenant:a") for _ in range(6)])
    b = put(store, fair("tenant:b"), fair("tenant:b"))
    c, = put(store, fair("tenant:c"))
    urgent, = put(store, fair("tenant:a", priority=10))
    plain, = put(store, ("default", 0))
    got = [take(store, limit=1)[0].id for _ in range(11)]
    assert got == [urgent, plain, a[0], b[0], c, a[1], b[1], a[2], a[3], a[4], a[5]]


def test_a_fair_claim_takes_the_next_turn(store):
    """Claims of one task at a time follow the turns: a quiet key's task, enqueued
    after a busy key's backlog, is claimed next, not after the backlog."""
    busy = put(store, *[fair("busy") for _ in range(50)])
    assert [x.id for x in take(store, limit=1)] == [busy[0]]
    quiet, = put(store, fair("quiet"))
    got = [take(store, limit=1)[0].id for _ in range(2)]
    assert got == [busy[1], quiet]  # it joins the round at the head of the line


# -- cancelling running tasks (docs/flow-control.md) -----------------------------------

def test_stop_asks_the_holder_and_a_stopped_task_back_in_ready_is_cancelled(store):
    a, b = put(store, ("default", 0), ("default", 0))
    take(store, worker="w1", lease=300)
    assert store.stop(backend=B, ids=[a, 10**9], reason="cancelled by test") == [a]
    assert store.stop(backend=B, ids=[a], reason="again") == [a]  # keeps the first reason
    [(id_, entry)] = store.stopping(worker="w1", ids=[a, b])
    assert id_ == a and entry == {"exception_class_path": "offload.exceptions.Cancelled",
                                  "traceback": "offload.exceptions.Cancelled: cancelled by test\n"}
    assert store.stopping(worker="w2", ids=[a]) == [] and store.stopping(worker="w1", ids=[]) == []
    store.rescue(backend=B, now=now(), max_rescues=5, worker="w1")  # both back to READY
    assert [c.id for c in take(store, worker="w2")] == [b]  # a is never claimed again
    assert store.cancel_stopped(backend=B, now=now()) == [a]
    r = row(a)
    assert r.status == "FAILED" and r.finished_at is not None
    assert json.loads(r.errors)[-1] == entry
    assert store.cancel_stopped(backend=B, now=now()) == []


# -- complete, cycle, heartbeat --------------------------------------------------------

def test_complete_writes_outcomes_under_the_lease_token(store):
    a, b, c = put(store, *[("default", 0)] * 3)
    ca, cb, cc = take(store)
    later = now() + timedelta(minutes=1)
    outcomes = [done(ca), Outcome(cb.id, cb.token + 1, "FAILED", now()),
                Outcome(cc.id, cc.token, "READY", None, available_at=later, errors='["e"]')]
    assert store.complete(outcomes) == {a, c}
    assert (row(a).status, row(a).return_value, row(a).lease_token) == ("SUCCESSFUL", "null", None)
    assert row(b).status == "RUNNING"  # the wrong token wrote nothing
    retried = row(c)
    assert (retried.status, retried.available_at, retried.errors) == ("READY", later, '["e"]')
    assert store.complete([]) == set()
    assert TaskStat.objects.filter(outcome="SUCCESSFUL").values_list("tasks", flat=True).get() == 1


def test_a_late_write_after_a_rescue_is_refused(store):
    """A worker whose lease expired while it was frozen cannot overwrite the newer attempt."""
    [id_] = put(store, ("default", 0))
    [old] = take(store, worker="frozen", lease=1)
    later = now() + timedelta(seconds=5)
    assert store.rescue(backend=B, now=later, max_rescues=5) == [(id_, "READY")]
    [new] = take(store, worker="fresh", at=later)
    assert new.token != old.token
    assert store.complete([done(old, "FAILED")]) == set()
    assert store.complete([done(new)]) == {new.id}
    r = row(id_)
    assert (r.status, r.worker_ids, r.rescues, r.attempts) == ("SUCCESSFUL", "frozen,fresh", 1, 2)


def test_cycle_records_then_claims(store):
    a, b = put(store, ("default", 0), ("default", 0))
    [ca] = take(store, limit=1)
    accepted, claimed = store.cycle([done(ca)], {"backend": B, "queues": ["default"], "limit": 5,
                                                 "worker": "w1", "lease": 30, "now": now()})
    assert accepted == {a} and [c.id for c in claimed] == [b]
    assert store.cycle([], None) == (set(), [])


def test_heartbeat_extends_only_the_holders_leases(store):
    [id_] = put(store, ("default", 0))
    [c] = take(store, lease=1)
    at = now()
    assert store.heartbeat(worker="w1", ids=[c.id], lease=60, now=at) == 1
    assert row(id_).lease_expires_at == at + timedelta(seconds=60)
    assert store.heartbeat(worker="w2", ids=[c.id], lease=60, now=at) == 0
    assert store.heartbeat(worker="w1", ids=[], lease=60, now=at) == 0


# -- taking tasks back -----------------------------------------------------------------

def test_hand_back_keeps_the_place_in_line(store):
    first, _ = put(store, ("default", 0), ("default", 0))
    [c] = take(store, limit=1)
    assert store.hand_back(worker="w1") == [first]
    r = row(first)
    assert (r.status, r.claimed_by, r.lease_token, r.rescues) == ("READY", None, None, 0)
    assert [c.id for c in take(store, worker="w2", limit=1)] == [first]


def test_rescue_expired_leases_and_by_worker(store):
    a, b = put(store, ("default", 0), ("default", 0))
    take(store, worker="frozen", limit=1, lease=1)
    take(store, worker="dead", limit=1, lease=300)
    at = now() + timedelta(seconds=5)
    assert store.rescue(backend=B, now=at, max_rescues=5) == [(a, "READY")]
    assert [tuple(r) for r in store.rescue(backend=B, now=at, max_rescues=5, worker="dead")] == [
        (b, "READY")]
    assert (row(a).rescues, row(b).rescues, row(a).claimed_by) == (1, 1, None)
    assert store.rescue(backend=B, now=at, max_rescues=5) == []


def test_rescue_fails_a_task_past_max_rescues(store):
    [id_] = put(store, ("default", 0))
    for attempt in range(3):
        take(store, worker=f"w{attempt}")
        [(_, status)] = store.rescue(backend=B, now=now(), max_rescues=2, worker=f"w{attempt}")
        assert status == ("READY" if attempt < 2 else "FAILED")
    r = row(id_)
    assert r.status == "FAILED" and r.finished_at is not None
    assert json.loads(r.errors)[-1]["exception_class_path"] == "offload.exceptions.WorkerLost"


# -- maintenance and operations --------------------------------------------------------

def test_pause_and_runnable(store):
    assert store.runnable(backend=B, queues=["default"], now=now()) is False
    put(store, ("default", 0, now() + timedelta(hours=1)))
    assert store.runnable(backend=B, queues=["default"], now=now()) is False
    put(store, ("default", 0))
    assert store.runnable(backend=B, queues=["default"], now=now()) is True
    assert store.runnable(backend=B, queues=["emails"], now=now()) is False
    assert store.runnable(backend=B, queues=[], now=now()) is True
    store.pause(backend=B, queue="default", paused=True, now=now())
    assert QueueState.objects.get(backend=B, queue_name="default").paused
    assert store.runnable(backend=B, queues=[], now=now()) is False
    store.pause(backend=B, queue="default", paused=False, now=now())
    assert store.runnable(backend=B, queues=["default"], now=now()) is True


def test_retry_and_cancel(store):
    failed, running, ready = put(store, *[("default", 0)] * 3)
    TaskRow.objects.filter(pk=failed).update(status="FAILED", finished_at=now())
    at = now()
    assert store.retry(backend=B, ids=[failed, running], now=at) == [failed]
    assert (row(failed).status, row(failed).available_at, row(failed).finished_at) == ("READY", at, None)
    assert [c.id for c in take(store, limit=1)] == [running]  # the retried one is now the newest
    assert sorted(store.cancel(backend=B, ids=[failed, running, ready], now=now(), reason="no")) == [
        failed, ready]
    r = row(ready)
    assert r.status == "FAILED" and "offload.exceptions.Cancelled: no" in r.errors
    assert row(running).status == "RUNNING"
    assert TaskStat.objects.get(outcome="FAILED").tasks == 2


def test_cap_aged_moves_capped_tasks_out_of_the_ageing_index(store):
    t0 = now()
    [id_] = put(store, ("default", 0), at=t0, age_rate=1.0)
    kw = dict(backend=B, age_rate=1.0, age_cap=50)
    assert store.cap_aged(now=t0, **kw) == 0 and row(id_).age_key is not None
    assert store.cap_aged(now=t0 + timedelta(seconds=51), batch=1, **kw) == 1
    assert row(id_).age_key is None


def test_prune_deletes_only_old_finished_tasks(store):
    old, recent, waiting = put(store, *[("default", 0)] * 3)
    TaskRow.objects.filter(pk=old).update(status="SUCCESSFUL", finished_at=now() - timedelta(days=8))
    TaskRow.objects.filter(pk=recent).update(status="FAILED", finished_at=now())
    assert store.prune(backend=B, before=now() - timedelta(days=7), batch=1) == 1
    assert set(TaskRow.objects.values_list("pk", flat=True)) == {recent, waiting}


def test_record_rows_and_fold_stats_keep_the_sums(store):
    ids = put(store, *[("default", 0)] * 3)
    claimed = take(store)
    accepted = store.complete([done(c) for c in claimed], worker="w1")
    assert accepted == set(ids)
    [stat] = TaskStat.objects.filter(worker="w1")
    assert (stat.tasks, stat.ran, stat.outcome) == (3, 3, "SUCCESSFUL")
    assert stat.task_path == PATH
    before = TaskStat.objects.values_list("tasks", "ran", "wait_sum", "run_sum").get()
    store.fold_stats(backend=B, before=now() + timedelta(minutes=5))  # minutes into hours
    [hour] = TaskStat.objects.all()
    assert (hour.minute, hour.worker) == (stat.minute.replace(minute=0), HOURS_WORKER)
    assert (hour.tasks, hour.ran, hour.task_path) == (*before[:2], PATH)
    store.fold_stats(backend=B, before=now() + timedelta(minutes=5),
                     hours_before=now() + timedelta(hours=2))  # hours into the totals
    [totals] = TaskStat.objects.all()
    assert (totals.minute, totals.worker) == (TOTALS_MINUTE, "")
    assert (totals.tasks, totals.ran, totals.task_path) == (*before[:2], PATH)
    assert totals.wait_sum == pytest.approx(before[2]) and totals.run_sum == pytest.approx(before[3])


def test_fold_stats_moves_what_a_previous_release_counted(store):
    """Workers of a release before migration 0015 count into offload_stat (LegacyStat)
    during a rolling deploy; folding moves their rows into offload_series, per queue
    (no task path), and a second fold finds nothing more to move."""
    minute = now().replace(second=0, microsecond=0)
    LegacyStat.objects.create(backend=B, minute=minute, worker="old", queue_name="default",
                              priority=0, outcome="SUCCESSFUL", tasks=7, ran=7)
    LegacyStat.objects.create(backend=OTHER, minute=minute, worker="old", queue_name="default",
                              priority=0, outcome="SUCCESSFUL", tasks=1, ran=1)
    for _ in range(2):
        store.fold_stats(backend=B, before=minute - timedelta(hours=2))
    [moved] = TaskStat.objects.all()
    assert (moved.minute, moved.worker, moved.task_path, moved.tasks) == (minute, "old", "", 7)
    assert list(LegacyStat.objects.values_list("backend", flat=True)) == [OTHER]


# -- scope: each statement touches only its backend's rows ------------------------------
# "other" keeps its tasks in the same database as B: only the backend column tells them apart.

OTHER = "other"


def take_other(store, worker="w2", lease=30, at=None):
    return store.claim(backend=OTHER, queues=["default"], limit=10, worker=worker, lease=lease,
                       now=at or now())


def test_every_statement_takes_its_backend_or_says_why_not():
    """A statement (not a fragment) filters on %(backend)s, or its file says, in a
    '-- scope:' line, what scopes it instead (a worker id, ids, a lease token)."""
    for engine in ENGINES:
        for name in {p.stem for d in (engine, "common") for p in (SQL_DIR / d).glob("*.sql")}:
            text = path(engine, name).read_text()
            if "(a fragment" in text.splitlines()[0]:
                continue
            assert "%(backend)s" in query(engine, name) or "\n-- scope:" in text, (engine, name)


def test_rescue_by_time_leaves_another_backends_tasks_alone(store):
    [mine], [theirs] = put(store, ("default", 0)), put(store, ("default", 0), backend=OTHER)
    take(store, worker="w1", lease=1)
    take_other(store, lease=1)
    assert store.rescue(backend=B, now=now() + timedelta(seconds=5), max_rescues=5) == [(mine, "READY")]
    assert (row(theirs).status, row(theirs).rescues) == ("RUNNING", 0)


def test_rescue_by_worker_leaves_another_backends_tasks_alone(store):
    [mine], [theirs] = put(store, ("default", 0)), put(store, ("default", 0), backend=OTHER)
    take(store, worker="same")
    take_other(store, worker="same")
    rows = store.rescue(backend=B, now=now(), max_rescues=5, worker="same")
    assert [tuple(r) for r in rows] == [(mine, "READY")]
    assert row(theirs).status == "RUNNING"


def test_cap_aged_leaves_another_backends_tasks_alone(store):
    t0 = now()
    [mine] = put(store, ("default", 0), at=t0, age_rate=1.0)
    [theirs] = put(store, ("default", 0), at=t0, age_rate=1.0, backend=OTHER)
    assert store.cap_aged(backend=B, now=t0 + timedelta(seconds=51), age_rate=1.0, age_cap=50) == 1
    assert row(mine).age_key is None and row(theirs).age_key is not None


def test_prune_leaves_another_backends_tasks_alone(store):
    ids = put(store, ("default", 0)) + put(store, ("default", 0), backend=OTHER)
    TaskRow.objects.filter(pk__in=ids).update(status="SUCCESSFUL", finished_at=now() - timedelta(days=8))
    assert store.prune(backend=B, before=now() - timedelta(days=7)) == 1
    assert list(TaskRow.objects.values_list("backend", flat=True)) == [OTHER]


def test_fold_stats_leaves_another_backends_rows_alone(store):
    put(store, ("default", 0))
    put(store, ("default", 0), backend=OTHER)
    store.complete([done(c) for c in take(store) + take_other(store)], worker="w1")
    store.fold_stats(backend=B, before=now() + timedelta(minutes=5),
                     hours_before=now() + timedelta(hours=2))
    assert TaskStat.objects.get(backend=B).minute == TOTALS_MINUTE
    assert TaskStat.objects.get(backend=OTHER).minute != TOTALS_MINUTE


def test_retry_and_cancel_leave_another_backends_tasks_alone(store):
    failed, ready = put(store, ("default", 0), ("default", 0), backend=OTHER)
    TaskRow.objects.filter(pk=failed).update(status="FAILED", finished_at=now())
    assert store.retry(backend=B, ids=[failed], now=now()) == []
    assert store.cancel(backend=B, ids=[ready], now=now(), reason="no") == []
    assert (row(failed).status, row(ready).status) == ("FAILED", "READY")


def test_pause_leaves_another_backends_queue_alone(store):
    put(store, ("default", 0), backend=OTHER)
    store.pause(backend=B, queue="default", paused=True, now=now())
    assert store.runnable(backend=OTHER, queues=["default"], now=now()) is True
    assert [c.queue_name for c in take_other(store)] == ["default"]


def test_end_sessions_is_harmless_for_a_worker_without_sessions(store):
    assert store.end_sessions("nobody-here") == 0
    connections["default"].ensure_connection()


def test_forget_keys_deletes_only_the_lock_rows_of_keys_nothing_runs(store):
    from offload.models import ConcurrencyKey

    put(store, keyed("a"), keyed("b"), keyed("a"))
    [c1, c2] = take(store)
    store.complete([done(c1)])
    store.unpark(backend=B, keys=["a"])
    if store.engine == "sqlite":  # no lock rows: the single writer serialises claims
        assert store.forget_keys(backend=B) == 0 and not ConcurrencyKey.objects.exists()
        return
    assert set(ConcurrencyKey.objects.values_list("key", flat=True)) == {"a", "b"}
    assert store.forget_keys(backend=B) == 1
    assert list(ConcurrencyKey.objects.values_list("key", flat=True)) == [c2.concurrency_key]
    assert [c.concurrency_key for c in take(store, worker="w2")] == ["a"]  # re-created at need
