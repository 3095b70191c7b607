"""The claim planner and the worker lifecycle: pure rules, no database, no processes."""

import pytest

from offload.worker.loop import Lifecycle
from offload.worker.planner import (
    GENERAL,
    MAX_CLAIM,
    MAX_WINDOW,
    RESERVED,
    ClaimRequest,
    Rules,
    free_slots,
    limits_for,
    plan,
    window,
    with_coroutines,
)

QUEUES = ("crm", "default", "emails")


def kinds(requests):
    return [(r.kind, r.pool, r.queues, r.limit) for r in requests]


def test_with_no_limits_one_general_claim_rides_with_the_outcomes():
    [cycle] = plan(Rules(queues=QUEUES), general=4, reserved=0)
    assert cycle == ClaimRequest("cycle", GENERAL, 4, queues=QUEUES, exclude=())
    assert cycle.store_args(4) == {"queues": list(QUEUES), "exclude": [], "limit": 4}


def test_nothing_free_still_records_the_outcomes():
    assert kinds(plan(Rules(queues=QUEUES, limited={"crm": (2, None)}, reserve=(1, 50)),
                      general=0, reserved=0)) == [("cycle", GENERAL, QUEUES, 0)]


def test_limited_queues_come_first_up_to_their_room_and_leave_the_general_claim():
    rules = Rules(queues=QUEUES, limited=limits_for(QUEUES, {"crm": 2}, {"emails": 3}))
    requests = plan(rules, general=5, reserved=0, running={"crm": 1})
    assert kinds(requests) == [("claim", GENERAL, ("crm",), 1),
                               ("claim_limited", GENERAL, ("emails",), 5),
                               ("cycle", GENERAL, QUEUES, 5)]
    assert requests[1].store_args(2) == {"queue": "emails", "cluster_max": 3, "limit": 2}
    assert requests[2].exclude == ("crm", "emails")


def test_a_full_limited_queue_is_not_claimed():
    rules = Rules(queues=QUEUES, limited={"crm": (2, None)})
    assert kinds(plan(rules, general=3, reserved=0, running={"crm": 2})) == [
        ("cycle", GENERAL, QUEUES, 3)]


def test_reserved_slots_take_only_urgent_work_after_the_general_claim():
    rules = Rules(queues=QUEUES, limited={"crm": (1, None)}, reserve=(2, 50))
    *_, reserved = plan(rules, general=2, reserved=2)
    assert reserved == ClaimRequest("claim", RESERVED, 2, queues=QUEUES, exclude=("crm",),
                                    min_priority=50)
    assert reserved.store_args(1)["min_priority"] == 50


def test_free_slots():
    assert free_slots(8, (2, 50), busy_general=3, busy_reserved=1) == (3, 1)
    assert free_slots(8, (2, 50), busy_general=7, busy_reserved=2) == (0, 0)
    assert free_slots(4, (0, 100), busy_general=0, busy_reserved=0) == (4, 0)


def test_the_window_holds_about_two_milliseconds_of_work():
    assert window(4, None) == 0  # nothing measured yet: claim none ahead
    assert window(4, 0.020) == 0  # 20 ms tasks: a task claimed ahead would wait too long
    assert window(4, 0.001) == 8  # 1 ms tasks: 8 more, about 2 ms of work for 4 threads
    assert window(4, 0.00001) == MAX_WINDOW
    assert window(0, 0.001) == 0  # every thread reserved: no general window
    # the window is general room on top of the free threads
    assert free_slots(4, (1, 50), busy_general=3, busy_reserved=0, window=8) == (8, 1)
    assert free_slots(4, (0, 100), busy_general=12, busy_reserved=0, window=8) == (0, 0)


def test_coroutine_slots_join_the_claim_as_the_coroutines_share_grows():
    assert with_coroutines(4, free_async=500, async_share=0.0) == 4  # none seen: threads only
    assert with_coroutines(4, free_async=500, async_share=0.5) == 8  # half: as many again
    assert with_coroutines(4, free_async=500, async_share=0.75) == 16
    assert with_coroutines(4, free_async=100, async_share=0.97) == 104  # nearly all: every slot
    assert with_coroutines(4, free_async=500, async_share=1.0) == MAX_CLAIM
    assert with_coroutines(4, free_async=10, async_share=1.0) == 14
    assert with_coroutines(4, free_async=0, async_share=1.0) == 4  # every coroutine slot busy
    assert with_coroutines(0, free_async=500, async_share=0.5) == 0  # threads full, mixed work


def test_limits_apply_to_the_queues_taken():
    assert limits_for(["a", "b"], {"a": 2, "z": 1}, {"b": 3}) == {"a": (2, None), "b": (None, 3)}
    assert limits_for([], {"a": 2}, {}) == {"a": (2, None)}  # every queue


@pytest.mark.parametrize(("start", "event", "after"), [
    (Lifecycle.RUNNING, "drain", Lifecycle.DRAINING),
    (Lifecycle.RUNNING, "replace", Lifecycle.REPLACING),
    (Lifecycle.RUNNING, "now", Lifecycle.STOPPING_NOW),
    (Lifecycle.REPLACING, "drain", Lifecycle.DRAINING),  # asked to stop: exit 0, not replaced
    (Lifecycle.DRAINING, "replace", Lifecycle.DRAINING),
    (Lifecycle.DRAINING, "now", Lifecycle.STOPPING_NOW),
    (Lifecycle.STOPPING_NOW, "drain", Lifecycle.STOPPING_NOW),
    (Lifecycle.STOPPING_NOW, "replace", Lifecycle.STOPPING_NOW),
])
def test_lifecycle(start, event, after):
    assert start.next(event) is after
