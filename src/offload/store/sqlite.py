"""SQLite store: one statement per batch under SQLite's single writer, WAL mode.

Cross-process wake-up is a cheap ``PRAGMA data_version`` poll (it changes whenever
another connection commits), so an idle server notices new work within milliseconds
without reading the table. Example::

    SqliteStore("default").claim(backend="default", queues=["default"], limit=8,
                                 worker="host-1-ab12", lease=30, now=now())
"""

from datetime import datetime, timedelta

from django.db import transaction

from offload.stats import tally
from offload.store.base import Store, age_key, ageing_bounds

# SQLite allows 32,766 bound parameters per statement; stay well below.
_MAX_PARAMS = 30000
_CHUNK = _MAX_PARAMS // 8  # outcomes per complete statement (eight parameters each)


class SqliteStore(Store):
    engine = "sqlite"
    fold_statements = ("fold", "fold_delete")

    def prepare(self):
        """Settings every Offload connection to an SQLite file needs: WAL and a busy timeout."""
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA synchronous=NORMAL")

    def data_version(self):
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return cursor.fetchone()[0]

    def wakeups(self, backend, name):
        """How a worker learns of new work: ``data_version`` (store/wakeups.py)."""
        from offload.store.wakeups import DataVersion

        return DataVersion(self)

    def _insert(self, backend, rows, *, now, age_rate):
        inserted = []
        step = _MAX_PARAMS // 8
        now_db = self.db_time(now)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            params = [backend, now_db]
            for queue, priority, path, payload, run_after, unique_key in chunk:
                ra = self.db_time(run_after)
                params += (queue, priority, path, payload, ra or now_db, ra, unique_key,
                           age_key(priority, run_after or now, age_rate))
            sql = self.sql("enqueue").replace("{rows}", ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s)"] * len(chunk)))
            inserted += self.execute(sql, params)
        return inserted

    def _claim_params(self, *, backend, limit, worker, lease, now, token, **extra):
        return {"backend": backend, "now": self.db_time(now), "limit": limit, "worker": worker,
                "token": token, "lease_until": self.db_time(now + timedelta(seconds=lease)),
                **extra}

    def claim(self, *, backend, queues, limit, worker, lease, now, exclude=(),
              min_priority=-100, age_rate=0.0, age_cap=0, server=""):
        token = self.new_token()
        horizon, age_now, age_cap = ageing_bounds(now, age_rate, age_cap)
        params = self._claim_params(
            backend=backend, limit=limit, worker=worker, lease=lease, now=now, token=token,
            horizon=self.db_time(horizon), age_now=age_now, age_cap=age_cap,
            age_rate=float(age_rate), min_priority=min_priority, server=server)
        filters = ["priority >= %(min_priority)s",
                   # the release fence (see postgres/filters.sql)
                   "NOT EXISTS (SELECT 1 FROM offload_server s "
                   "WHERE s.id = %(server)s AND s.state <> 'running')",
                   "queue_name NOT IN (SELECT q.queue_name FROM offload_queue q "
                   "WHERE q.backend = %(backend)s AND q.paused)"]
        if queues:
            filters.append(f"queue_name IN ({self.in_list('q', queues, params)})")
        if exclude:
            filters.append(f"queue_name NOT IN ({self.in_list('x', exclude, params)})")
        sql = self.sql("claim").replace("{conditions}", " AND ".join(filters))
        return self._claimed(self.execute(sql, params), token, now)

    def claim_limited(self, *, backend, queue, cluster_max, limit, worker, lease, now, server=""):
        token = self.new_token()
        params = self._claim_params(backend=backend, limit=limit, worker=worker, lease=lease,
                                    now=now, token=token, queue=queue, cluster_max=cluster_max,
                                    server=server)
        return self._claimed(self.execute(self.sql("claim_limited"), params), token, now)

    def complete(self, outcomes, *, worker="", observed=None):
        """One transaction per chunk: the UPDATE, whose RETURNING says which outcomes were
        accepted, then the upsert of offload_stat (SQLite has no data-modifying CTE).
        The UPDATE comes first, so the transaction holds the write lock from its first
        statement and never upgrades a read."""
        prepared = self._prepare_complete(outcomes, worker, observed)
        accepted = set()
        for chunk in prepared:
            with transaction.atomic(using=self.db_alias, savepoint=False):
                accepted |= self._complete(*chunk, worker)
        return accepted

    def cycle(self, outcomes, claim=None, *, worker="", observed=None):
        """Record ``outcomes`` and claim in one transaction: a busy worker pays one
        commit per batch, as with PostgreSQL's cycle statement. The transaction's
        first statement writes, so it takes the write lock at once; everything that
        can be prepared is prepared before it."""
        if not (outcomes and claim) or len(outcomes) > _CHUNK:
            return super().cycle(outcomes, claim, worker=worker, observed=observed)
        [chunk] = self._prepare_complete(outcomes, worker, observed)
        with transaction.atomic(using=self.db_alias):
            return self._complete(*chunk, worker), self.claim(**claim)

    def _prepare_complete(self, outcomes, worker, observed):
        """``[(update sql, params, chunk, its observed, upsert of their sums)]`` per chunk
        of outcomes, made before the transaction (see offload.stats.observe)."""
        chunks = []
        for start in range(0, len(outcomes), _CHUNK):
            chunk = outcomes[start:start + _CHUNK]
            seen = observed and observed[start:start + _CHUNK]
            params = []
            for o in chunk:
                params += (o.id, o.token, o.status, self.db_time(o.finished_at),
                           self.db_time(o.available_at), o.age_key, o.return_value, o.errors)
            sql = self.sql("complete").replace("{rows}", ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s)"] * len(chunk)))
            chunks.append((sql, params, chunk, seen, seen and self._upsert(tally(seen), worker)))
        return chunks

    def _complete(self, sql, params, chunk, seen, upsert, worker):
        """Run one prepared chunk (in the caller's transaction); return the accepted ids.
        The sums count every outcome: if a lease was lost, the accepted outcomes are
        summed again (observed) or counted from their rows (not observed)."""
        accepted = {r[0] for r in self.execute(sql, params)}
        if not seen:
            self.record_rows(sorted(accepted), worker=worker, observe=True)
        elif len(accepted) == len(chunk):
            self._run_raw(*upsert)
        elif accepted:
            kept = [row for o, row in zip(chunk, seen) if o.id in accepted]
            self._run_raw(*self._upsert(tally(kept), worker))
        return accepted

    def record_rows(self, ids, *, worker="", observe):
        if ids:
            params = {}
            sql = self.sql("record_rows").replace("{ids}", self.in_list("id", ids, params))
            rows = self.execute(sql, params)
            upsert = self._upsert(tally((_observed(*r[1:]) for r in rows), observe), worker)
            if upsert:
                self._run_raw(*upsert)

    def _upsert(self, series, worker):
        """``(sql, params)`` adding ``series`` (offload.stats.tally) to offload_stat under
        ``worker`` (see sqlite/record.sql), or None if there is nothing to add."""
        if not series:
            return None
        params = []
        for (backend, minute, queue, priority, outcome), values in series.items():
            if not isinstance(minute, str):  # the worker's sums: an aware datetime
                minute = self.db_time(minute)
            params += (backend, minute, worker, queue, priority, outcome, *values)
        row = "(" + ",".join("?" * (len(params) // len(series))) + ")"
        return self.sql("record").replace("{rows}", ",".join([row] * len(series))), params

    def _run_raw(self, sql, params):
        """Run on the sqlite3 connection itself (in the caller's transaction), with qmark
        placeholders: Django's cursor would rewrite a long statement's placeholders with
        a regular expression on every call."""
        conn = self.connection
        with conn.wrap_database_errors:
            conn.connection.execute(sql, params)


def _observed(backend, queue, priority, status, available, attempted, finished):
    """``(backend, queue, priority, status, minute, wait, run)`` from the stored UTC text
    (YYYY-MM-DD HH:MM:SS[.ffffff]): the minute it counts in (a retry: the minute its
    attempt started), the last attempt's wait (runnable → started) and run (started →
    finished) in seconds."""
    minute = (finished or attempted)[:16] + ":00"
    if finished is None or attempted is None:
        return backend, queue, priority, status, minute, None, None
    started = datetime.fromisoformat(attempted)
    return (backend, queue, priority, status, minute,
            (started - datetime.fromisoformat(available)).total_seconds(),
            (datetime.fromisoformat(finished) - started).total_seconds())
