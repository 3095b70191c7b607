"""The clock: the one place Offload reads the time, as an aware UTC datetime.

Store queries take ``now`` as a parameter (see docs/architecture.md, "Time comes from
the application servers"), so a caller reads the clock once and the worker, the store
and a test agree on it. Example::

    from offload.clock import now

    store.claim(backend="default", queues=[], limit=8, worker="w1", lease=30, now=now())
"""

from datetime import UTC, datetime


def now():
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
