"""Ageing maths: a waiting task's effective priority rises by ``AGE_RATE`` per second up
to ``AGE_CAP`` (see docs/priorities.md). Plain Python, used by the store (enqueue, the
claim's bounds) and the runner (a retry's new key). Example::

    age_key(10, available_at, rate=0.5)        # 10 - 0.5 * available_at.timestamp()
    ageing_bounds(now, rate=0.5, cap=20)        # (now - 40 s, 0.5 * now.timestamp(), 20)

A task stores ``age_key = priority - rate * epoch(available_at)``; at time ``now`` its
effective priority is ``age_key + rate * epoch(now)``, so the order of ``age_key`` is
the order of effective priority and an index on it serves the claim without rewriting
waiting rows.
"""

from datetime import timedelta


def age_key(priority, available_at, rate):
    """The ageing index key: orders still-ageing tasks by effective priority (None: ageing off)."""
    return priority - rate * available_at.timestamp() if rate else None


def ageing_bounds(now, rate, cap):
    """``(horizon, age_now, age_cap)``: tasks available before ``horizon`` reached the cap;
    ``age_now + age_key`` is a task's effective priority while it ages."""
    if not rate:
        return now, 0.0, 0
    return now - timedelta(seconds=cap / rate), rate * now.timestamp(), cap
