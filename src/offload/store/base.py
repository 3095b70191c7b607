"""The SQL both engines share: ``SqlStore``, the base of ``PostgresStore`` and
``SqliteStore``, implementing the contract (``offload.store.contract.Store``) wherever
one statement serves both engines.

Method names match query names (``claim()`` runs ``sql/<engine>/claim.sql``, loaded by
``offload.store.queries``). **Placeholders**: pyformat ``%(name)s`` only, on both
engines (psycopg takes it natively; Django's SQLite cursor converts it to ``:name``);
a list or a batch of rows is one parameter (``array``: a PostgreSQL array, an SQLite
JSON array), so no SQL text is assembled per call. Queries take ``now`` as a parameter
(``offload.clock.now``) so tests and the worker agree on one clock. Example::

    class SqliteStore(SqlStore):
        engine = "sqlite"   # its queries come from sql/sqlite/, then sql/common/

        def array(self, values):
            return json.dumps(list(values))
"""

import json
import os
import random
from datetime import UTC, datetime, timedelta

from django.db import connections, transaction
from django.utils.dateparse import parse_datetime

from offload.ageing import ageing_bounds
from offload.results import cancelled_entry, error_entry
from offload.stats import HOURS_WORKER, KEEP_HOURS, TOTALS_MINUTE
from offload.store.contract import Claimed
from offload.store.queries import query

#: Rows per batch where a caller writes many (the dashboard's bulk actions).
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


class SqlStore:
    """What both engines share; an engine sets ``engine`` and adds its own statements."""

    engine = ""
    #: What fold_stats runs, in one transaction.
    fold_statements = ("fold_legacy", "fold_hours", "fold")

    def __init__(self, db_alias):
        self.db_alias = db_alias

    @property
    def connection(self):
        return connections[self.db_alias]

    def sql(self, name):
        """The text of query ``name`` (``sql/<engine>/<name>.sql``, see offload.store.queries)."""
        return query(self.engine, name)

    def array(self, values):
        """``values`` as one list parameter of this engine (see in_ids.sql, in_queues.sql)."""
        raise NotImplementedError

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
        """Insert ``rows`` (``offload.store.contract.Row``: queue, priority, path,
        payload_json, run_after, unique_key, concurrency_key, concurrency_limit, rate_key,
        rate_interval, rate_burst, fair_key).

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
        return dict(self.execute(self.sql("pending"),
                                 {"backend": backend, "keys": self.array(sorted(keys))}))

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
        params = {"backend": backend, "now": self.db_time(now), "any_queue": not queues,
                  "queues": self.array(queues)}
        [(found,)] = self.execute(self.sql("runnable"), params)
        return bool(found)

    def retry(self, *, backend, ids, now, age_rate=0.0):
        """FAILED → READY now; returns the ids that changed (any number of ids, one statement)."""
        params = {"backend": backend, "now": self.db_time(now), "age_rate": float(age_rate),
                  "age_now": age_rate * now.timestamp(), "ids": self.array(ids)}
        return [r[0] for r in self.execute(self.sql("retry"), params)]

    def cancel(self, *, backend, ids, now, reason):
        """READY → FAILED with an ``offload.exceptions.Cancelled`` error; returns the ids
        (any number of ids, in one transaction)."""
        params = {"backend": backend, "now": self.db_time(now),
                  "error": json.dumps(cancelled_entry(reason)),
                  "ids": self.array(ids)}
        with transaction.atomic(using=self.db_alias):
            cancelled = [r[0] for r in self.execute(self.sql("cancel"), params)]
            self.record_rows(cancelled + self.settle(failed=cancelled, now=now), timed=False)
        return cancelled

    def stop(self, *, backend, ids, reason):
        """Ask the workers running tasks ``ids`` (RUNNING) to stop them: they fail each
        with an ``offload.exceptions.Cancelled`` error (docs/flow-control.md). Returns
        the ids asked; a task asked before keeps its first reason."""
        params = {"backend": backend, "error": json.dumps(cancelled_entry(reason)),
                  "ids": self.array(ids)}
        return [r[0] for r in self.execute(self.sql("stop"), params)]

    def stopping(self, *, worker, ids):
        """``[(id, error entry)]`` of the tasks ``ids`` that ``worker`` runs and was
        asked to stop (``stop``)."""
        if not ids:
            return []
        return [(id_, json.loads(entry)) for id_, entry in self.execute(
            self.sql("stopping"), {"worker": worker, "ids": self.array(ids)})]

    def cancel_stopped(self, *, backend, now):
        """Tasks asked to stop that are READY again (rescued, handed back, retried)
        become FAILED with their Cancelled error instead of running; returns the ids."""
        with transaction.atomic(using=self.db_alias):
            ids = [r[0] for r in self.execute(self.sql("cancel_stopped"),
                                              {"backend": backend, "now": self.db_time(now)})]
            self.record_rows(ids + self.settle(failed=ids, now=now), timed=False)
        return ids

    def pause(self, *, backend, queue, paused, now):
        params = {"backend": backend, "queue": queue, "paused": paused, "now": self.db_time(now)}
        self.execute(self.sql("pause"), params, fetch=False)

    def complete(self, outcomes, *, worker=""):
        """Write outcomes and count them in offload_series under ``worker``; return the set
        of ids whose write was accepted (lease still held).

        Outcomes that carry their claim (a worker's) are observed from it
        (``offload.stats.observe``) and summed before the statement, which adds the
        sums of the accepted ones; otherwise the accepted outcomes are counted from
        their rows (``record_rows``) in the same transaction."""
        raise NotImplementedError

    def record_rows(self, ids, *, worker="", timed):
        """Count the outcomes just written to tasks ``ids`` in offload_series (in the
        caller's transaction); ``timed``: time them in the histograms too."""
        raise NotImplementedError

    def fold_stats(self, *, backend, before, hours_before=None):
        """Fold offload_series minutes before ``before`` into rows per hour, and hours
        before ``hours_before`` (by default KEEP_HOURS before ``before``) into the
        totals rows."""
        if hours_before is None:
            hours_before = before - timedelta(hours=KEEP_HOURS)
        params = {"backend": backend, "before": self.db_time(before),
                  "hours_before": self.db_time(hours_before), "hours": HOURS_WORKER,
                  "totals": self.db_time(TOTALS_MINUTE)}
        with transaction.atomic(using=self.db_alias):
            for name in self.fold_statements:
                self.execute(self.sql(name), params, fetch=False)

    def _claimed(self, rows, params, claimed_at=None):
        """``Claimed`` of the claim statement's rows; ``params``: the claim's (its
        backend, token and, unless ``claimed_at`` is given, time)."""
        token, backend = params["token"], params["backend"]
        claimed_at = claimed_at or params["now"]
        claimed = [
            Claimed(r[0], r[1], r[2], r[3], r[4], as_aware(r[5]), as_aware(r[6]),
                    as_aware(r[7]), r[8], r[9], token, claimed_at, as_aware(r[10]), backend, r[11],
                    r[12], r[13])
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

    def cycle(self, outcomes, claim=None, *, worker=""):
        """Record ``outcomes`` (see complete) and, if ``claim`` (claim's keyword
        arguments), claim more.

        Returns ``(accepted_ids, claimed)``. Engines may do both in one statement.
        """
        accepted = self.complete(outcomes, worker=worker) if outcomes else set()
        return accepted, (self.claim(**claim) if claim else [])

    def heartbeat(self, *, worker, ids, lease, now, execute=None):
        """``execute(sql, params)``: run it there instead (the wake-up source's own
        connection, see store/wakeups.py); returns the row count."""
        if not ids:
            return 0
        params = {"worker": worker, "lease_until": self.db_time(now + timedelta(seconds=lease)),
                  "ids": self.array(ids)}
        if execute is not None:
            return execute(self.sql("heartbeat"), params)
        return self.execute(self.sql("heartbeat"), params, fetch=False)

    def hand_back(self, *, worker):
        return [r[0] for r in self.execute(self.sql("hand_back"), {"worker": worker})]

    def end_sessions(self, worker):
        """End what a dead worker process left running in the database before its tasks
        are rescued (PostgreSQL; SQLite rolls a dead process's transaction back itself)."""
        return 0

    def rescue(self, *, backend, now, max_rescues, worker=None):
        """Take back ``backend``'s tasks of a dead ``worker``, or (worker=None) its tasks
        whose lease expired; ``max_rescues`` is that backend's MAX_RESCUES."""
        lost = error_entry(
            "offload.exceptions.WorkerLost",
            f"offload.exceptions.WorkerLost: the worker running this task died or froze "
            f"more than {max_rescues} times (MAX_RESCUES); it was not tried again.\n",
        )
        params = {"backend": backend, "now": self.db_time(now), "worker": worker,
                  "max_rescues": max_rescues, "error": json.dumps(lost)}
        with transaction.atomic(using=self.db_alias):
            rows = self.execute(self.sql("rescue_worker" if worker else "rescue"), params)
            failed = [id_ for id_, status in rows if status == "FAILED"]
            # RETRIED, or FAILED; and the workflow steps that depended on the failed
            self.record_rows([r[0] for r in rows] + self.settle(failed=failed, now=now),
                             timed=False)
        return rows

    def unpark(self, *, backend, keys):
        """Of keys ``keys``, the tasks set aside while the key was full go back into the
        claim's indexes, as many as each key has room for, best first; how many. A
        worker calls it after recording outcomes of keyed tasks; maintenance for the
        keys ``waiting_keys`` finds."""
        raise NotImplementedError

    def waiting_keys(self, *, backend, batch=1000):
        """Keys with tasks set aside that have room now (a worker died between recording
        its outcomes and ``unpark``)."""
        return [r[0] for r in self.execute(self.sql("waiting_keys"),
                                           {"backend": backend, "batch": batch})]

    def unpark_waiting(self, *, backend):
        """``unpark`` every key ``waiting_keys`` finds; how many tasks went back."""
        keys = self.waiting_keys(backend=backend)
        return self.unpark(backend=backend, keys=keys) if keys else 0

    def forget_keys(self, *, backend, batch=5000):
        """Delete the claim-lock rows of concurrency keys that nothing runs (PostgreSQL's
        offload_key, see migration 0008; SQLite has none); return how many."""
        return 0

    def record_atomic(self, outcome, *, worker=""):
        """Write an atomic task's success in its own transaction (the caller's), under
        the lease guard; whether it was accepted. Its sums are not added here, where
        every task's transaction would wait on the same offload_series row until it
        commits: the worker adds them with its batch (``add_sums``). A workflow step's
        dependents are settled in the same transaction."""
        if self._write_success(outcome) != 1:
            return False
        self.settle_outcomes([outcome], {outcome.id})
        return True

    def _write_success(self, outcome):
        """The guarded UPDATE of succeeded.sql; the row count."""
        return self.execute(self.sql("succeeded"), self._succeeded(outcome), fetch=False)

    def _succeeded(self, outcome):
        return {"id": outcome.id, "token": outcome.token, "result": outcome.return_value,
                "finished": self.db_time(outcome.finished_at)}

    # -- workflows (docs/workflows.md) ----------------------------------------------

    def link(self, *, workflow, steps, edges):
        """Make the tasks just enqueued the steps of ``workflow``: ``steps`` is ``[(id,
        dependencies)]`` (a step with dependencies waits, BLOCKED), ``edges`` is
        ``[(parent, child, position)]``. In the enqueue's transaction."""
        raise NotImplementedError

    def settle(self, *, succeeded=(), failed=(), now):
        """The bookkeeping of finished workflow steps, in the caller's transaction (the
        one that recorded them): the steps waiting for ``succeeded`` lose a dependency
        and run once they have none left (``release``); every step downstream of
        ``failed`` fails (``fail_dependents``). Ids that are not steps cost an index
        probe. Returns the ids of the steps it failed (for the caller's sums)."""
        failed_now = []
        if succeeded:
            params = {"ids": self.array(sorted(succeeded)), "settled_at": self.db_time(now),
                      "settled_epoch": now.timestamp()}
            ready = {backend for _, status, backend in self.execute(self.sql("release"), params)
                     if status == "READY"}
            for backend in sorted(ready):
                self.notify(backend)
        if failed:
            params = {"ids": self.array(sorted(failed)), "now": self.db_time(now)}
            failed_now = [r[0] for r in self.execute(self.sql("fail_dependents"), params)]
        return failed_now

    def settle_outcomes(self, outcomes, accepted):
        """``settle`` for the accepted ``outcomes`` that finished a workflow step (or
        may have: an outcome without its claim); returns the ids of the steps it failed."""
        succeeded, failed, at = [], [], None
        for o in outcomes:
            if o.id in accepted and (o.claim is None or o.claim.workflow_id is not None):
                if o.status == "SUCCESSFUL":
                    succeeded.append(o.id)
                elif o.status == "FAILED":
                    failed.append(o.id)
                else:
                    continue
                at = o.finished_at if at is None else max(at, o.finished_at)
        if not (succeeded or failed):
            return []
        return self.settle(succeeded=succeeded, failed=failed, now=at)

    @staticmethod
    def settles(outcomes):
        """Whether recording ``outcomes`` may finish a workflow step (see settle_outcomes)."""
        return any(o.status != "READY" and (o.claim is None or o.claim.workflow_id is not None)
                   for o in outcomes)

    def settle_blocked(self, *, backend, now, older_than=10.0, batch=1000):
        """The net under ``settle``: BLOCKED steps enqueued more than ``older_than``
        seconds ago whose dependencies all succeeded become READY, and what is
        downstream of a failed step they wait for fails. It finds work only after a
        completion recorded without the bookkeeping (a worker of an older release in a
        rolling deploy). Returns ``(released, failed)`` counts."""
        params = {"backend": backend, "now": self.db_time(now), "batch": batch,
                  "before": self.db_time(now - timedelta(seconds=older_than))}
        with transaction.atomic(using=self.db_alias):
            rows = self.execute(self.sql("settle_blocked"), params)
            parents = [r[0] for r in self.execute(self.sql("blocked_by_failed"), params)]
            failed = self.settle(failed=parents, now=now) if parents else []
            self.record_rows(failed, timed=False)
            released = sum(1 for _, status in rows if status == "READY")
            if released:
                self.notify(backend)
        return released, len(failed)

    def with_received(self, id_, receives, args):
        """``args`` of workflow step ``id_`` after what it ``receives`` (decode_payload):
        the return value of the step it depends on ("one"), or the list of its
        dependencies' values in order ("all")."""
        rows = self.execute(self.sql("received"), {"id": id_})
        if any(parent is None for parent, _ in rows):
            raise LookupError(
                f"workflow step {id_}: a step it depends on is gone (pruned after RETAIN) "
                "before this one ran, so its result cannot be passed on; raise RETAIN above "
                "the longest a workflow waits between its steps.")
        values = [None if v is None else json.loads(v) for _, v in rows]
        return [values[0] if receives == "one" else values, *args]

    def notify(self, backend, payload=""):
        """Wake ``backend``'s idle servers at commit (PostgreSQL's NOTIFY; SQLite's
        servers see every commit in ``data_version``)."""

    def add_sums(self, outcomes, *, worker=""):
        """Add to offload_series the sums of ``outcomes`` their atomic tasks recorded."""
        raise NotImplementedError

    def hold(self, claimed):
        """At the start of an atomic task's transaction: whether its lease still holds.
        PostgreSQL takes no lock here (a lock on the row would keep the heartbeat
        waiting until the task commits): the record at the end is the guard."""
        return True

    def next_turn(self, *, backend, now):
        """The soonest turn after ``now`` given to a rate-limited task, or None."""
        raise NotImplementedError

    def forget_buckets(self, *, backend, now, batch=5000):
        """Delete the rate limits' buckets that are full again; return how many."""
        return self._delete_batches("forget_buckets",
                                    {"backend": backend, "now_epoch": now.timestamp()}, batch)

    def _delete_batches(self, name, params, batch):
        """Run the DELETE ``name`` (which deletes at most ``%(batch)s`` rows) until a
        batch comes up short; how many rows it deleted in all."""
        deleted = 0
        while True:
            n = self.execute(self.sql(name), {**params, "batch": batch}, fetch=False)
            deleted += n
            if n < batch:
                return deleted

    def delete_finished(self, ids):
        """Delete the finished tasks among ``ids`` and the dependencies of those steps,
        in one transaction (prune, and the dashboard's delete); how many."""
        with transaction.atomic(using=self.db_alias):
            deleted = self.execute(self.sql("prune_delete"), {"ids": self.array(ids)}, fetch=False)
            self.execute(self.sql("prune_edges"), {"ids": self.array(ids)}, fetch=False)
        return deleted

    def prune(self, *, backend, before, batch=5000):
        """Delete ``backend``'s finished tasks older than ``before`` in batches; return how many.
        Metrics do not change: offload_series counted the outcomes when they were recorded."""
        deleted = 0
        while True:
            ids = [r[0] for r in self.execute(
                self.sql("prune"), {"backend": backend, "before": self.db_time(before),
                                    "batch": batch})]
            if ids:
                self.delete_finished(ids)
            deleted += len(ids)
            if len(ids) < batch:
                self.execute(self.sql("prune_workflows"),
                             {"backend": backend, "before": self.db_time(before)}, fetch=False)
                return deleted
