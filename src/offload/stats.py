"""The buckets of the wait and run histograms that ``offload_stat`` keeps (see
``offload.models.TaskStat``); plain Python, shared by the model, the store's SQL and the
readers. Example::

    bucket_columns("wait")  # [("wait_le_2ms", 0.002), ..., ("wait_le_3600000ms", 3600.0)]
"""

from bisect import bisect_left
from datetime import UTC, datetime
from itertools import accumulate

#: Upper bounds, in seconds, of the histogram buckets. ``TaskStat`` has one column per
#: bound and kind holding how many observations were at most that bound (cumulative,
#: as Prometheus buckets are).
STAT_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0, 3600.0)
#: The ``minute`` of a series' totals row: what folding carried out of old minutes.
TOTALS_MINUTE = datetime(1970, 1, 1, tzinfo=UTC)
#: Minutes younger than this stay per minute (the dashboard shows the last hour);
#: maintenance folds older ones into the totals rows.
KEEP_MINUTES = 120


def bucket_columns(kind):
    """``[(column, upper bound)]`` of one histogram (``kind`` is "wait" or "run")."""
    return [(f"{kind}_le_{round(le * 1000)}ms", le) for le in STAT_BUCKETS]


def stat_columns():
    """offload_stat's value columns, in the order of ``tally``'s values."""
    return ["tasks", "ran", "wait_sum", "run_sum"] + [
        name for kind in ("wait", "run") for name, _ in bucket_columns(kind)]


def observe(backend, done):
    """What offload_stat counts of outcomes a worker is about to record, in ``tally``'s
    row form; ``done`` is ``(Outcome, Claimed)`` pairs. Made in the worker, before the
    statement, from what it holds, which is what the rows get: the claim's ``now``
    became ``last_attempted_at`` (``claimed_at``), the claim returned ``available_at``,
    the outcome carries ``finished_at``. The store sums them (see postgres/record.sql)."""
    return [(backend, c.queue_name, c.priority, o.status,
             (o.finished_at or c.claimed_at).replace(second=0, microsecond=0),
             o.finished_at and (c.claimed_at - c.available_at).total_seconds(),
             o.finished_at and (o.finished_at - c.claimed_at).total_seconds())
            for o, c in done]


def tally(rows, observe=True):
    """Sum observed outcomes into offload_stat series, the way postgres/record.sql's
    aggregates do (the SQLite store writes them with sqlite/record.sql).

    ``rows`` are ``(backend, queue, priority, status, minute, wait, run)``;
    returns ``{(backend, minute, queue, priority, outcome): values}`` with values in
    the order of the ``{stat_columns}`` list: tasks, ran, wait_sum, run_sum, the wait
    buckets, then the run buckets (cumulative). A READY status is a retry: counted as
    RETRIED, never timed; ``observe=False`` counts without timing.
    """
    n = len(STAT_BUCKETS)
    series = {}
    for backend, queue, priority, status, minute, wait, run in rows:
        outcome = "RETRIED" if status == "READY" else status
        key = (backend, minute, queue, priority, outcome)
        s = series.get(key)
        if s is None:
            s = series[key] = [0, 0, 0.0, 0.0] + [0] * (2 * n + 2)
        s[0] += 1
        if observe and outcome != "RETRIED":
            s[1] += 1
            s[2] += wait
            s[3] += run
            s[4 + bisect_left(STAT_BUCKETS, wait)] += 1  # the first bucket it fits
            s[5 + n + bisect_left(STAT_BUCKETS, run)] += 1
    for s in series.values():  # per-bucket counts → cumulative; drop the overflow slots
        s[4:] = list(accumulate(s[4:5 + n]))[:n] + list(accumulate(s[5 + n:]))[:n]
    return series
