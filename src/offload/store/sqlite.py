"""SQLite store: one statement per batch under SQLite's single writer, WAL mode.

Cross-process wake-up is a cheap ``PRAGMA data_version`` poll (it changes whenever
another connection commits), so an idle server notices new work within milliseconds
without reading the table. Example::

    SqliteStore("default").claim(backend="default", queues=["default"], limit=8,
                                 worker="host-1-ab12", lease=30, now=now())
"""

import json
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import groupby

from django.db import OperationalError, transaction

from offload.ageing import age_key, ageing_bounds
from offload.stats import observation, observe, stat_columns, tally
from offload.store.base import SqlStore
from offload.store.queries import native

#: A list or a batch of rows as one parameter, read in SQL with json_each.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


#: The longest an enqueue sleeps between two tries for the write lock (_waiting_finely).
WAIT_STEP = 0.002


class SqliteStore(SqlStore):
    engine = "sqlite"
    fold_statements = ("fold_legacy", "fold_legacy_delete", "fold_hours", "fold_hours_delete", "fold",
                       "fold_delete")

    def prepare(self):
        """Settings every Offload connection to an SQLite file needs: WAL and a busy timeout."""
        with self.connection.cursor() as cursor:
            for statement in self.sql("prepare").split("\n"):
                if statement.strip():
                    cursor.execute(statement)

    def data_version(self):
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql("data_version"))
            return cursor.fetchone()[0]

    def wakeups(self, backend, name, listen=True):
        """How a worker learns of new work: ``data_version`` (store/wakeups.py)."""
        from offload.store.wakeups import DataVersion

        return DataVersion(self)

    def array(self, values):
        """A list parameter: a JSON array (``IN (SELECT value FROM json_each(%(ids)s))``)."""
        return _json(list(values))

    def _insert(self, backend, rows, *, now, age_rate):
        if not rows:
            return []
        now_db = self.db_time(now)
        batch = []
        for queue, priority, path, payload, run_after, unique_key, *flow in rows:
            ra = self.db_time(run_after)
            batch.append((queue, priority, path, payload, ra or now_db, ra, unique_key,
                          age_key(priority, run_after or now, age_rate), *flow))
        params = {"backend": backend, "now": now_db, "rows": _json(batch)}
        if self.connection.in_atomic_block:  # the caller's transaction: SQLite waits as usual
            return self.execute(self.sql("enqueue"), params)
        return self._waiting_finely(lambda: self.execute(self.sql("enqueue"), params))

    def _waiting_finely(self, write):
        """Run ``write``, one statement that is its own transaction, waiting for the write
        lock in steps of at most WAIT_STEP instead of in SQLite's busy handler, whose
        growing sleeps (1, 2, 5, 10, 15, 20, 25 ms...) can sleep well past the moment the
        lock frees: a web request's enqueue behind busy workers waited up to 58 ms where
        this waits 13 (docs/benchmarks.md#noisy-neighbour-fair-sharing). Safe to retry
        only because the statement is its whole transaction (it failed before writing);
        within the caller's transaction SQLite's own wait is kept. The connection's busy
        timeout is the deadline, and is put back."""
        self.connection.ensure_connection()
        raw = self.connection.connection
        [(timeout_ms,)] = raw.execute("PRAGMA busy_timeout").fetchall()
        raw.execute("PRAGMA busy_timeout = 0")
        deadline, pause = time.monotonic() + timeout_ms / 1000, WAIT_STEP / 8
        try:
            while True:
                try:
                    return write()
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, WAIT_STEP)
        finally:
            raw.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")

    def _claim_params(self, *, backend, limit, worker, lease, now, token, **extra):
        return {"backend": backend, "now": self.db_time(now), "now_epoch": now.timestamp(),
                "limit": limit, "worker": worker, "token": token,
                "lease_until": self.db_time(now + timedelta(seconds=lease)), **extra}

    def claim(self, *, backend, queues, limit, worker, lease, now, exclude=(),
              min_priority=-100, age_rate=0.0, age_cap=0, server=""):
        token = self.new_token()
        horizon, age_now, age_cap = ageing_bounds(now, age_rate, age_cap)
        params = self._claim_params(
            backend=backend, limit=limit, worker=worker, lease=lease, now=now, token=token,
            horizon=self.db_time(horizon), age_now=age_now, age_cap=age_cap,
            age_rate=float(age_rate), min_priority=min_priority, server=server,
            any_queue=not queues, queues=_json(list(queues)), exclude=_json(list(exclude)))
        return self._claim("claim", params, now, limit, age_rate)

    def claim_limited(self, *, backend, queue, cluster_max, limit, worker, lease, now, server=""):
        token = self.new_token()
        params = self._claim_params(backend=backend, limit=limit, worker=worker, lease=lease,
                                    now=now, token=token, queue=queue, cluster_max=cluster_max,
                                    server=server)
        return self._claim("claim_limited", params, now, limit, 0.0)

    def _claim(self, statement, params, now, limit, age_rate):
        """The claim, then setting aside the keys it filled (_park) and, if it did not
        fill its slots, giving turns (_pace): one transaction, so a failure after the
        claim's UPDATE gives back what it took instead of leaving it RUNNING until its
        lease expires. The UPDATE comes first, so the transaction writes (holds the
        write lock) from its first statement."""
        with transaction.atomic(using=self.db_alias, savepoint=False):  # none in cycle's
            claimed = self._park(self._claimed(self.execute(self.sql(statement), params),
                                               params, now))
            if len(claimed) < limit:
                self._pace(params["backend"], now, age_rate)
        return claimed

    def _park(self, claimed):
        """After a claim that took keyed tasks: set aside the READY tasks of those keys
        that are now full (sqlite/park.sql; PostgreSQL does it inside the claim)."""
        keys = {c.concurrency_key for c in claimed if c.concurrency_key is not None}
        if keys:
            self.execute(self.sql("park"), {"backend": claimed[0].backend,
                                            "keys": self.array(sorted(keys))}, fetch=False)
        return claimed

    def _pace(self, backend, now, age_rate):
        """After a claim that did not fill its slots, in its transaction (so under the
        write lock its UPDATE took): give the due tasks of rate limits' buckets that
        still need a token their turns, best first, one interval apart from each
        bucket's next token (``available_at``, ``rate_paced``), so later claims neither
        pass over them nor take them before their turn; and give due turns that the
        bucket's starts do not allow yet (claims came late) new ones from its next
        start. PostgreSQL does this inside the claim (``offload_admit``, migration 0014)."""
        probe = {"backend": backend, "now": self.db_time(now)}
        now_e = now.timestamp()
        keys = sorted(k for (k,) in self.execute(self.sql("unpaced_buckets"), probe))
        turns, ends = [], []
        if keys:
            self.execute(self.sql("buckets"), {"backend": backend, "keys": self.array(keys),
                                               "now_epoch": now_e}, fetch=False)
            times = {key: (tat, started) for key, tat, started in self.execute(
                self.sql("bucket_tats"), {"backend": backend, "keys": self.array(keys)})}
        for key in keys:
            rows = self.execute(self.sql("unpaced"), {**probe, "key": key})
            if not rows:
                continue
            step, burst = rows[0][4], rows[0][5]  # the bucket's best task's rate
            tat, started = times[key]
            base = max(tat, started - step / 4, now_e)
            turns += self._turns(rows, base, step, burst, age_rate)
            ends.append({"backend": backend, "key": key, "tat": base + len(rows) * step})
        late = self.execute(self.sql("late_turns"), {**probe, "now_epoch": now_e})
        for _, rows in groupby(late, key=lambda r: r[7]):
            rows = list(rows)
            step, burst, started = rows[0][4], rows[0][5], rows[0][6]
            turns += self._turns(rows, started - step / 4, step, burst, age_rate)
        if turns:  # none can be left under the lock, and executemany([]) is an error here
            with self.connection.cursor() as cursor:
                cursor.executemany(self.sql("pace"), turns)
                if ends:
                    cursor.executemany(self.sql("bucket_set"), ends)

    def _turns(self, rows, base, step, burst, age_rate):
        """The turns of one bucket's due tasks (best first) from ``base``, its next
        token or start: the k-th at ``base - (burst - k) * step``, never before the
        task was due."""
        turns = []
        for k, (id_, priority, ageing, available, *_) in enumerate(rows, 1):
            turn = max(datetime.fromtimestamp(base - (burst - k) * step, UTC), _utc(available))
            turns.append({"id": id_, "available_at": self.db_time(turn),
                          "age_key": age_key(priority, turn, age_rate) if ageing else None})
        return turns

    def link(self, *, workflow, steps, edges):
        self.execute(self.sql("steps"), {"workflow": workflow, "rows": _json(steps)}, fetch=False)
        if edges:
            self.execute(self.sql("edges"), {"edges": _json(edges)}, fetch=False)

    def hold(self, claimed):
        """Take the write lock with the guard's own write (sqlite/hold.sql)."""
        return self.execute(self.sql("hold"), {"id": claimed.id, "token": claimed.token},
                            fetch=False) == 1

    def next_turn(self, *, backend, now):
        [(turn,)] = self.execute(self.sql("next_turn"), {"backend": backend,
                                                         "now": self.db_time(now)})
        return turn and _utc(turn)

    def unpark(self, *, backend, keys):
        back = 0
        for key in sorted(set(keys)):
            back += self.execute(self.sql("unpark"), {"backend": backend, "key": key}, fetch=False)
        return back

    def complete(self, outcomes, *, worker=""):
        """One transaction: the UPDATE, whose RETURNING says which outcomes were
        accepted, then the upsert of offload_series (SQLite has no data-modifying CTE).
        The UPDATE comes first, so the transaction holds the write lock from its first
        statement and never upgrades a read."""
        if not outcomes:
            return set()
        prepared = self._prepare_complete(outcomes, worker)
        with transaction.atomic(using=self.db_alias, savepoint=False):
            return self._complete(*prepared, worker)

    def add_sums(self, outcomes, *, worker=""):
        seen = outcomes and observe(outcomes)
        if seen:
            with transaction.atomic(using=self.db_alias, savepoint=False):
                self._run_raw(*self._upsert(tally(seen), worker))

    def cycle(self, outcomes, claim=None, *, worker=""):
        """Record ``outcomes`` and claim in one transaction: a busy worker pays one
        commit per batch, as with PostgreSQL's cycle statement. The transaction's
        first statement writes, so it takes the write lock at once; everything that
        can be prepared is prepared before it."""
        if not (outcomes and claim):
            return super().cycle(outcomes, claim, worker=worker)
        prepared = self._prepare_complete(outcomes, worker)
        with transaction.atomic(using=self.db_alias):
            return self._complete(*prepared, worker), self.claim(**claim)

    def _prepare_complete(self, outcomes, worker):
        """``(params, outcomes, upsert of their sums or None)``, made before the
        transaction (see offload.stats.observe)."""
        db_time = self.db_time
        batch = [(o.id, o.token, o.status, db_time(o.finished_at), db_time(o.available_at),
                  o.age_key, o.return_value, o.errors) for o in outcomes]
        seen = observe(outcomes)
        return {"outcomes": _json(batch)}, outcomes, seen and self._upsert(tally(seen), worker)

    def _complete(self, params, chunk, upsert, worker):
        """Run a prepared batch (in the caller's transaction); return the accepted ids.
        The sums count every outcome: if a lease was lost, the accepted outcomes are
        summed again (from their claims) or counted from their rows (no claims). The
        workflow steps they finish are settled here, in the same transaction."""
        accepted = {r[0] for r in self.execute(self.sql("complete"), params)}
        if self.settles(chunk):
            self.record_rows(self.settle_outcomes(chunk, accepted), worker=worker, timed=False)
        if upsert is None:
            self.record_rows(sorted(accepted), worker=worker, timed=True)
        elif len(accepted) == len(chunk):
            self._run_raw(*upsert)
        elif accepted:
            kept = observe([o for o in chunk if o.id in accepted])
            self._run_raw(*self._upsert(tally(kept), worker))
        return accepted

    def record_rows(self, ids, *, worker="", timed):
        if ids:
            rows = self.execute(self.sql("record_rows"), {"ids": self.array(ids)})
            upsert = self._upsert(tally((_observation(*r) for r in rows), timed), worker)
            if upsert:
                self._run_raw(*upsert)

    def _upsert(self, series, worker):
        """``(sql, rows)`` adding ``series`` (offload.stats.tally) to offload_series under
        ``worker`` (see sqlite/record.sql), or None if there is nothing to add."""
        if not series:
            return None
        return _record(), [(backend, self.db_time(minute), worker, queue, priority, task, outcome,
                            *values)
                           for (backend, minute, queue, priority, task, outcome), values
                           in series.items()]

    def _run_raw(self, sql, rows):
        """Run ``sql`` once per row of values on the sqlite3 connection itself (in the
        caller's transaction), in sqlite3's qmark style (``queries.native``): the
        worker's upsert of its sums runs for every batch, and Django's cursor would
        convert the placeholders of its long statement on every call."""
        conn = self.connection
        with conn.wrap_database_errors:
            conn.connection.executemany(sql, rows)


@cache
def _record():
    """sqlite/record.sql in qmark style; ``_upsert`` passes the values in this order."""
    sql, names = native("sqlite", "record")
    expected = ("backend", "minute", "worker", "queue_name", "priority", "task_path", "outcome",
                *stat_columns())
    if names != expected:
        raise ValueError(f"sqlite/record.sql: parameters {names}, expected {expected}")
    return sql


def _utc(value):
    """A stored time as an aware datetime: sqlite3 converts a datetime column's value to
    a naive datetime; an aggregate's (min, max) stays the stored UTC text."""
    return (value if isinstance(value, datetime) else datetime.fromisoformat(value)).replace(tzinfo=UTC)


def _observation(backend, queue, priority, task, status, *times):
    """offload.stats.observation of a record_rows row, whose times are the stored UTC
    text (YYYY-MM-DD HH:MM:SS[.ffffff]) or NULL."""
    return observation(backend, queue, priority, task, status,
                       *(t and datetime.fromisoformat(t).replace(tzinfo=UTC) for t in times))
