"""The Store contract and the SQL both engines share.

Method names match query files (``claim()`` ↔ ``sql/<engine>/claim.sql``). Queries
take ``now`` as a parameter so tests and the worker agree on one clock.
"""

import json
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from django.db import connections, transaction
from django.utils.dateparse import parse_datetime

from offload.results import error_entry
from offload.stats import TOTALS_MINUTE, bucket_columns, stat_columns

SQL_DIR = Path(__file__).parent / "sql"


def _stat_sql():
    """The offload_stat column lists the statistics SQL shares (record, record_rows, fold)."""
    buckets = [(name, kind, le) for kind in ("wait", "run") for name, le in bucket_columns(kind)]
    columns = stat_columns()
    aggregates = ["count(*)", "count(o.wait)", "COALESCE(sum(o.wait), 0)", "COALESCE(sum(o.run), 0)"]
    aggregates += [f"count(*) FILTER (WHERE o.{kind} <= {le!r})" for _, kind, le in buckets]
    return {
        "stat_columns": ", ".join(columns),
        "stat_aggregates": ", ".join(aggregates),
        "stat_sums": ", ".join(f"sum({c})" for c in columns),
        "stat_adds": ", ".join(f"{c} = offload_stat.{c} + excluded.{c}" for c in columns),
    }


@cache
def load_sql(engine, name):
    """Read ``sql/<engine>/<name>.sql`` (falling back to ``sql/common``), comments removed.

    ``{name}`` includes the fragment file of that name (``picked``, ``take``, ...);
    ``{stat_columns}`` and its kin are offload_stat's column lists.
    """
    path = SQL_DIR / engine / f"{name}.sql"
    if not path.exists():
        path = SQL_DIR / "common" / f"{name}.sql"
    lines = path.read_text().splitlines()
    sql = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    for fragment in ("done", "record", "observed", "picked", "filters", "take", "taken",
                     "append_error"):
        if "{" + fragment + "}" in sql:
            sql = sql.replace("{" + fragment + "}", load_sql(engine, fragment).strip())
    for name, text in _stat_sql().items():
        sql = sql.replace("{" + name + "}", text)
    return sql


@dataclass(slots=True)
class Claimed:
    """A task row as the claim returned it, plus the claim's token and time (the
    attempt's ``last_attempted_at``)."""

    id: int
    task_path: str
    payload: str
    priority: int
    queue_name: str
    enqueued_at: datetime
    run_after: datetime | None
    started_at: datetime
    worker_ids: str
    errors: str
    token: int
    claimed_at: datetime
    available_at: datetime  # when it became runnable: the wait is claimed_at - available_at


@dataclass(slots=True)
class Outcome:
    """What happened to a claimed task, ready to be written by ``complete``."""

    id: int
    token: int
    status: str  # SUCCESSFUL, FAILED, or READY (a retry)
    finished_at: datetime | None
    available_at: datetime | None = None  # retries only
    return_value: str | None = None  # JSON text, SUCCESSFUL only
    errors: str | None = None  # full JSON list when it changed
    age_key: float | None = None  # retries only, when ageing is on
    #: The failure (not stored): ``task_finished`` is sent while it is being handled.
    exception: BaseException | None = None


def age_key(priority, available_at, rate):
    """The ageing index key: orders still-ageing tasks by effective priority."""
    return priority - rate * available_at.timestamp() if rate else None


def ageing_bounds(now, rate, cap):
    """``(horizon, age_now, age_cap)``: tasks available before ``horizon`` reached the cap;
    ``age_now + age_key`` is a task's effective priority while it ages."""
    if not rate:
        return now, 0.0, 0
    return now - timedelta(seconds=cap / rate), rate * now.timestamp(), cap


def now():
    return datetime.now(UTC)


#: Ids per statement when a caller passes any number: SQLite allows 32,766 variables
#: in one statement and PostgreSQL 65,535 parameters.
CHUNK = 1000


def chunks(values, size=CHUNK):
    """``values`` (a sequence) in lists of at most ``size``."""
    return [list(values[i:i + size]) for i in range(0, len(values), size)]


def as_aware(value):
    """A datetime from the database as an aware UTC datetime (SQLite returns naive or text)."""
    if value is None or isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str):
        value = parse_datetime(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class Store:
    engine = ""
    #: What fold_stats runs, in one transaction.
    fold_statements = ("fold",)

    def __init__(self, db_alias):
        self.db_alias = db_alias

    @property
    def connection(self):
        return connections[self.db_alias]

    def sql(self, name):
        return load_sql(self.engine, name)

    def db_time(self, value):
        """A datetime as this engine stores it (SQLite: naive UTC text, as Django's ORM)."""
        if value is None:
            return None
        return self.connection.ops.adapt_datetimefield_value(value)

    def execute(self, sql, params=(), fetch=True):
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if fetch else cursor.rowcount

    # -- the hot path -----------------------------------------------------------

    def enqueue(self, backend, rows, *, now, age_rate=0.0):
        """Insert ``rows`` of (queue, priority, path, payload_json, run_after, unique_key).

        Returns ``[(id, created)]`` in order; a row whose unique key a pending task holds
        is not inserted and gets that task's id with ``created=False``.
        """
        result = [None] * len(rows)
        first_of = {}  # within one call the first row of a key wins; later ones join it
        todo = []
        for i, row in enumerate(rows):
            key = row[5]
            if key is None or key not in first_of:
                first_of.setdefault(key, i)
                todo.append(i)
        for _ in range(3):  # a holder may finish between the insert and the lookup
            inserted = self._insert(backend, [rows[i] for i in todo], now=now, age_rate=age_rate)
            by_key = {key: id_ for id_, key in inserted if key is not None}
            plain = iter(sorted(id_ for id_, key in inserted if key is None))
            missing = []
            for i in todo:
                key = rows[i][5]
                if key is None:
                    result[i] = (next(plain), True)
                elif key in by_key:
                    result[i] = (by_key[key], True)
                else:
                    missing.append(i)
            held = self.pending(backend, {rows[i][5] for i in missing}) if missing else {}
            todo = [i for i in missing if rows[i][5] not in held]
            for i in missing:
                if rows[i][5] in held:
                    result[i] = (held[rows[i][5]], False)
            if not todo:
                break
        else:
            raise RuntimeError("could not enqueue: unique keys kept changing hands")
        for i, row in enumerate(rows):
            if result[i] is None:
                result[i] = (result[first_of[row[5]]][0], False)
        return result

    def pending(self, backend, keys):
        """``{unique_key: id}`` of READY/RUNNING tasks holding these keys."""
        params = {"backend": backend}
        sql = self.sql("pending").replace("{keys}", self.in_list("k", sorted(keys), params))
        return dict(self.execute(sql, params))

    def _insert(self, backend, rows, *, now, age_rate):
        """Insert what the unique index allows; return ``[(id, unique_key)]`` inserted."""
        raise NotImplementedError

    def claim(self, *, backend, queues, limit, worker, lease, now, exclude=(),
              min_priority=-100, age_rate=0.0, age_cap=0, server=""):
        """Take up to ``limit`` runnable tasks of ``queues`` (empty: every queue) in
        effective-priority order, leaving out ``exclude`` and paused queues; nothing
        if ``server`` is registered and no longer running."""
        raise NotImplementedError

    def claim_limited(self, *, backend, queue, cluster_max, limit, worker, lease, now, server=""):
        """Claim from one queue while at most ``cluster_max`` of its tasks run anywhere."""
        raise NotImplementedError

    def cap_aged(self, *, backend, now, age_rate, age_cap, batch=10000):
        """Stop ageing the tasks that reached the cap; return how many."""
        horizon, _, _ = ageing_bounds(now, age_rate, age_cap)
        total = 0
        while True:
            n = self.execute(self.sql("cap_aged"), {"backend": backend, "batch": batch,
                                                    "horizon": self.db_time(horizon)}, fetch=False)
            total += n
            if n < batch:
                return total

    def runnable(self, *, backend, queues, now):
        params = {"backend": backend, "now": self.db_time(now)}
        queue_filter = f"queue_name IN ({self.in_list('q', queues, params)})" if queues else "1=1"
        [(found,)] = self.execute(self.sql("runnable").replace("{queue_filter}", queue_filter), params)
        return bool(found)

    def retry(self, *, backend, ids, now, age_rate=0.0):
        """FAILED → READY now; returns the ids that changed (any number of ids, in one
        transaction)."""
        retried = []
        with transaction.atomic(using=self.db_alias):
            for part in chunks(ids):
                params = {"backend": backend, "now": self.db_time(now), "age_rate": float(age_rate),
                          "age_now": age_rate * now.timestamp()}
                sql = self.sql("retry").replace("{ids}", self.in_list("id", part, params))
                retried += [r[0] for r in self.execute(sql, params)]
        return retried

    def cancel(self, *, backend, ids, now, reason):
        """READY → FAILED with an ``offload.exceptions.Cancelled`` error; returns the ids
        (any number of ids, in one transaction)."""
        error = error_entry("offload.exceptions.Cancelled", f"offload.exceptions.Cancelled: {reason}\n")
        cancelled = []
        with transaction.atomic(using=self.db_alias):
            for part in chunks(ids):
                params = {"backend": backend, "now": self.db_time(now), "error": json.dumps(error)}
                sql = self.sql("cancel").replace("{ids}", self.in_list("id", part, params))
                done = [r[0] for r in self.execute(sql, params)]
                self.record_rows(done, observe=False)
                cancelled += done
        return cancelled

    def pause(self, *, backend, queue, paused, now):
        params = {"backend": backend, "queue": queue, "paused": paused, "now": self.db_time(now)}
        self.execute(self.sql("pause"), params, fetch=False)

    def complete(self, outcomes, *, worker="", observed=None):
        """Write outcomes and count them in offload_stat under ``worker``; return the set
        of ids whose write was accepted (lease still held).

        ``observed``: per outcome, what offload_stat counts (``offload.stats.observe``),
        from a worker, which knows it; the store sums it before the statement and adds
        the sums of the accepted outcomes. Without it, the accepted outcomes are counted
        from their rows (``record_rows``) in the same transaction."""
        raise NotImplementedError

    def record_rows(self, ids, *, worker="", observe):
        """Count the outcomes just written to tasks ``ids`` in offload_stat (in the
        caller's transaction); ``observe``: time them in the histograms too."""
        raise NotImplementedError

    def fold_stats(self, *, backend, before):
        """Fold offload_stat minutes before ``before`` into the totals rows."""
        params = {"backend": backend, "before": self.db_time(before),
                  "totals": self.db_time(TOTALS_MINUTE)}
        with transaction.atomic(using=self.db_alias):
            for name in self.fold_statements:
                self.execute(self.sql(name), params, fetch=False)

    def _claimed(self, rows, token, claimed_at):
        claimed = [
            Claimed(r[0], r[1], r[2], r[3], r[4], as_aware(r[5]), as_aware(r[6]),
                    as_aware(r[7]), r[8], r[9], token, claimed_at, as_aware(r[10]))
            for r in rows
        ]
        # RETURNING order is unspecified: restore the claim order.
        claimed.sort(key=lambda c: (-c.priority, c.id))
        return claimed

    # Tokens fence claims, they are not secrets: a per-process generator seeded from
    # os.urandom is unique enough and avoids a system call per claim.
    _tokens = random.Random()
    os.register_at_fork(after_in_child=_tokens.seed)

    @classmethod
    def new_token(cls):
        return cls._tokens.getrandbits(62) + 1

    # -- maintenance (shared SQL) ---------------------------------------------

    def cycle(self, outcomes, claim=None, *, worker="", observed=None):
        """Record ``outcomes`` (see complete) and, if ``claim`` (claim's keyword
        arguments), claim more.

        Returns ``(accepted_ids, claimed)``. Engines may do both in one statement.
        """
        accepted = self.complete(outcomes, worker=worker, observed=observed) if outcomes else set()
        return accepted, (self.claim(**claim) if claim else [])

    @staticmethod
    def in_list(name, values, params):
        """``%(name0)s,%(name1)s,...`` for an IN list, adding the values to ``params``."""
        params.update({f"{name}{i}": v for i, v in enumerate(values)})
        return ",".join(f"%({name}{i})s" for i in range(len(values)))

    def heartbeat(self, *, worker, ids, lease, now):
        if not ids:
            return 0
        params = {"worker": worker, "lease_until": self.db_time(now + timedelta(seconds=lease))}
        sql = self.sql("heartbeat").replace("{ids}", self.in_list("id", ids, params))
        return self.execute(sql, params, fetch=False)

    def hand_back(self, *, worker):
        return [r[0] for r in self.execute(self.sql("hand_back"), {"worker": worker})]

    def end_sessions(self, worker):
        """End what a dead worker process left running in the database before its tasks
        are rescued (PostgreSQL; SQLite rolls a dead process's transaction back itself)."""
        return 0

    def rescue(self, *, backend, now, max_rescues, worker=None):
        """Take back ``backend``'s tasks of a dead ``worker``, or (worker=None) its tasks
        whose lease expired; ``max_rescues`` is that backend's MAX_RESCUES."""
        which = "claimed_by = %(worker)s" if worker else "lease_expires_at < %(now)s"
        lost = error_entry(
            "offload.exceptions.WorkerLost",
            f"offload.exceptions.WorkerLost: the worker running this task died or froze "
            f"more than {max_rescues} times (MAX_RESCUES); it was not tried again.\n",
        )
        params = {"backend": backend, "now": self.db_time(now), "worker": worker,
                  "max_rescues": max_rescues, "error": json.dumps(lost)}
        with transaction.atomic(using=self.db_alias):
            rows = self.execute(self.sql("rescue").replace("{which}", which), params)
            self.record_rows([r[0] for r in rows], observe=False)  # RETRIED, or FAILED
        return rows

    def prune(self, *, backend, before, batch=5000):
        """Delete ``backend``'s finished tasks older than ``before`` in batches; return how many.
        Metrics do not change: offload_stat counted the outcomes when they were recorded."""
        deleted = 0
        while True:
            ids = [r[0] for r in self.execute(
                self.sql("prune"), {"backend": backend, "before": self.db_time(before),
                                    "batch": batch})]
            if ids:
                params = {}
                sql = self.sql("prune_delete").replace("{ids}", self.in_list("id", ids, params))
                self.execute(sql, params, fetch=False)
            deleted += len(ids)
            if len(ids) < batch:
                return deleted
