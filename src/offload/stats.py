"""What ``offload_series`` counts and how (see ``offload.models.TaskStat``): the buckets
of the wait and run histograms, what one task counts as (``observation``) and the one
computation that sums observations into series (``tally``). Plain Python, shared by the
model, both stores and the readers; the stores only write what ``tally`` made. Example::

    bucket_columns("wait")  # [("wait_le_2ms", 0.002), ..., ("wait_le_3600000ms", 3600.0)]
    tally([observation("default", "emails", 0, "app.tasks.send", "SUCCESSFUL", t0, t1, t2)])
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
#: maintenance folds older ones into rows per hour.
KEEP_MINUTES = 120
#: The ``worker`` of a series' row per hour (``minute``: the hour's start).
HOURS_WORKER = "~hour"
#: Hours younger than this stay per hour (the dashboard's windows reach back 7 days);
#: maintenance folds older ones into the totals rows.
KEEP_HOURS = 8 * 24


def bucket_columns(kind):
    """``[(column, upper bound)]`` of one histogram (``kind`` is "wait" or "run")."""
    return [(f"{kind}_le_{round(le * 1000)}ms", le) for le in STAT_BUCKETS]


def stat_columns():
    """offload_series's value columns, in the order of ``tally``'s values."""
    return ["tasks", "ran", "wait_sum", "run_sum"] + [
        name for kind in ("wait", "run") for name, _ in bucket_columns(kind)]


def observation(backend, queue, priority, task, status, available, attempted, finished):
    """One task (of task path ``task``) as offload_series counts it, ``(backend, queue,
    priority, task, status, minute, wait, run)``: the minute it counts in (a retry: the minute its attempt started) and
    the last attempt's wait (runnable → started) and run (started → finished) in
    seconds, None when it never ran. The times are datetimes, all aware or all naive.
    The only definition: a worker makes it from what it holds (``observe``), a store
    from the rows (``record_rows``)."""
    minute = (finished or attempted).replace(second=0, microsecond=0)
    if finished is None or attempted is None:
        return backend, queue, priority, task, status, minute, None, None
    return (backend, queue, priority, task, status, minute,
            (attempted - available).total_seconds(), (finished - attempted).total_seconds())


def observe(outcomes):
    """The observations of outcomes a worker is about to record, made before the
    statement from the claims they answer (``Outcome.claim``), which is what the rows
    get: the claim's time became ``last_attempted_at``, the claim returned
    ``available_at``, the outcome carries ``finished_at``. None if an outcome has no
    claim: the store then counts from the rows."""
    if not all(o.claim for o in outcomes):
        return None
    return [observation(o.claim.backend, o.claim.queue_name, o.claim.priority,
                        o.claim.task_path, o.status,
                        o.claim.available_at, o.claim.claimed_at, o.finished_at)
            for o in outcomes]


def tally(rows, timed=True):
    """Sum observations (``observation``) into offload_series series: the one place the
    histograms are computed; the stores only write the sums (postgres/record.sql,
    sqlite/record.sql).

    ``rows`` are ``(backend, queue, priority, task, status, minute, wait, run)``;
    returns ``{(backend, minute, queue, priority, task, outcome): values}`` with values in
    the order of the ``{stat_columns}`` list: tasks, ran, wait_sum, run_sum, the wait
    buckets, then the run buckets (cumulative). A READY status is a retry: counted as
    RETRIED, never timed; ``timed=False`` counts without timing.
    """
    n = len(STAT_BUCKETS)
    series = {}
    for backend, queue, priority, task, status, minute, wait, run in rows:
        outcome = "RETRIED" if status == "READY" else status
        key = (backend, minute, queue, priority, task, outcome)
        s = series.get(key)
        if s is None:
            s = series[key] = [0, 0, 0.0, 0.0] + [0] * (2 * n + 2)
        s[0] += 1
        if timed and outcome != "RETRIED":
            s[1] += 1
            s[2] += wait
            s[3] += run
            s[4 + bisect_left(STAT_BUCKETS, wait)] += 1  # the first bucket it fits
            s[5 + n + bisect_left(STAT_BUCKETS, run)] += 1
    for s in series.values():  # per-bucket counts → cumulative; drop the overflow slots
        s[4:] = list(accumulate(s[4:5 + n]))[:n] + list(accumulate(s[5 + n:]))[:n]
    return series
