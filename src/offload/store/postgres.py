"""PostgreSQL store: arrays in, one statement per batch; LISTEN/NOTIFY wakes idle servers.

Example::

    PostgresStore("default").claim(backend="default", queues=["default"], limit=8,
                                   worker="host-1-ab12", lease=30, now=now())
"""

import json
import logging
from datetime import timedelta

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connections, transaction

from offload.ageing import age_key, ageing_bounds
from offload.stats import observation, observe, stat_columns, tally
from offload.store.base import SqlStore

logger = logging.getLogger("offload.worker")
#: A prepare threshold no query reaches by repetition: only ``prepare=True`` prepares.
ONLY_EXPLICIT = 2**31 - 1
_NOT_SUMMED = {"tallied": -1, "tally": "[]"}  # record.sql adds nothing
#: Batches of at least this many rows without unique, concurrency, rate or fair keys
#: are enqueued with COPY.
COPY_MIN = 100
#: What PostgreSQL answers when a connection's prepared statement is missing from the
#: server session, or that session has another statement of the name: a transaction
#: pooler gave the connection another server session (psycopg names its statements
#: ``_pg3_0``, ``_pg3_1``… on every connection, so they collide).
LOST_PREPARED = (psycopg.errors.DuplicatePreparedStatement,
                 psycopg.errors.InvalidSqlStatementName, psycopg.errors.ProtocolViolation)
LOST_PREPARED_HINT = (
    "Offload's prepared statements reach other server sessions: a transaction pooler that "
    "keeps no prepared statements (PgBouncer in transaction mode before 1.21) is between "
    "Django and PostgreSQL. Set OFFLOAD_PREPARE = False in the settings.")


def application_name(worker):
    """The ``application_name`` of a worker process's sessions (at most 63 bytes: the
    end of a long worker id is the part that is unique)."""
    name = f"offload:{worker}"
    return name if len(name) <= 63 else f"offload:{worker[-55:]}"


class PostgresStore(SqlStore):
    engine = "postgres"
    channel_prefix = "offload"

    def fetch(self, sql, params):
        """Run a hot statement (the worker's, and enqueue) as a server-side prepared
        statement.

        Django's PostgreSQL cursor binds parameters client-side, so the server parses
        and plans every statement again; the worker's few statements run thousands of
        times a second, and planning was half of an enqueue's time (0.55 → 0.31 ms),
        so they go through psycopg's own cursor with ``prepare=True`` (errors still
        arrive as Django's DatabaseError). Where Django logs queries (``DEBUG``, the
        debug toolbar, ``CaptureQueriesContext``) or a wrapper watches them
        (``connection.execute_wrapper``: APM), they go through Django's cursor instead,
        so nothing that watches the ORM's statements misses Offload's.

        Django opens connections with ``prepare_threshold=None`` unless the database's
        OPTIONS say otherwise, and psycopg then ignores ``prepare=True``; so on such a
        connection Offload sets a threshold no ORM query reaches, which prepares
        exactly its own statements. ``OFFLOAD_PREPARE = False`` leaves the connection
        alone (PgBouncer in transaction mode before 1.21 cannot keep prepared statements);
        the errors that such a pooler causes say so (LOST_PREPARED_HINT).
        """
        conn = self.connection
        if conn.queries_logged or conn.execute_wrappers:
            return self.execute(sql, params)  # every hot statement returns rows
        with conn.wrap_database_errors, psycopg.Cursor(self._raw()) as cursor:
            try:
                cursor.execute(sql, params, prepare=True)
            except LOST_PREPARED as exc:
                if "prepared statement" not in str(exc):
                    raise
                raise type(exc)(f"{exc}. {LOST_PREPARED_HINT}") from exc
            return cursor.fetchall() if cursor.description else cursor.rowcount

    def _raw(self):
        """The connected psycopg connection, ready to prepare Offload's statements."""
        conn = self.connection
        conn.ensure_connection()
        raw = conn.connection
        if raw.prepare_threshold is None and getattr(settings, "OFFLOAD_PREPARE", True):
            raw.prepare_threshold = ONLY_EXPLICIT
        return raw

    def channel(self, backend):
        return f"{self.channel_prefix}_{backend}"[:63]

    def array(self, values):
        """A list parameter: psycopg sends it as an array (``= ANY(%(ids)s)``)."""
        return list(values)

    def _insert(self, backend, rows, *, now, age_rate):
        if len(rows) >= COPY_MIN and all(r[5] is None and r[6] is None and r[8] is None
                                         and r[11] is None for r in rows):
            return self._copy(backend, rows, now=now, age_rate=age_rate)
        params = {
            "backend": backend, "now": now, "channel": self.channel(backend),
            "queues": [r[0] for r in rows], "priorities": [r[1] for r in rows],
            "paths": [r[2] for r in rows], "payloads": [r[3] for r in rows],
            "run_afters": [r[4] for r in rows], "unique_keys": [r[5] for r in rows],
            "age_keys": [age_key(r[1], r[4] or now, age_rate) for r in rows],
            "concurrency_keys": [r[6] for r in rows], "concurrency_limits": [r[7] for r in rows],
            "rate_keys": [r[8] for r in rows], "rate_intervals": [r[9] for r in rows],
            "rate_bursts": [r[10] for r in rows], "fair_keys": [r[11] for r in rows],
        }
        return self.fetch(self.sql("enqueue"), params)

    def _copy(self, backend, rows, *, now, age_rate):
        """A batch without unique, concurrency, rate or fair keys, with COPY (no statement to parse or arrays to
        quote): ids from the sequence, the rows streamed in, one NOTIFY; in the
        caller's transaction, like enqueue, through Django's cursor (its query log
        shows all three). Returns ``[(id, None)]``."""
        ids = [r[0] for r in self.execute(self.sql("enqueue_ids"), {"count": len(rows)})]
        with self.connection.cursor() as cursor, cursor.copy(self.sql("enqueue_copy")) as copy:
            for id_, (queue, priority, path, payload, run_after, *_) in zip(ids, rows, strict=True):
                copy.write_row((id_, backend, queue, priority, path, payload, "READY", now,
                                run_after or now, run_after, 0, 0, "", "[]",
                                age_key(priority, run_after or now, age_rate)))
        self.notify(backend)
        return [(id_, None) for id_ in ids]

    def link(self, *, workflow, steps, edges):
        self.execute(self.sql("steps"), {"workflow": workflow, "ids": [s[0] for s in steps],
                                         "deps": [s[1] for s in steps]}, fetch=False)
        if edges:
            self.execute(self.sql("edges"), {"parents": [e[0] for e in edges],
                                             "children": [e[1] for e in edges],
                                             "positions": [e[2] for e in edges]}, fetch=False)

    def notify(self, backend, payload=""):
        """NOTIFY ``backend``'s channel at commit: "" new work, "stop" a task asked to
        stop (``Listen`` tells the loop which)."""
        self.execute(self.sql("notify"), {"channel": self.channel(backend), "payload": payload},
                     fetch=False)

    def stop(self, *, backend, ids, reason):
        asked = super().stop(backend=backend, ids=ids, reason=reason)
        if asked:  # the workers look at once instead of at their next check
            self.notify(backend, "stop")
        return asked

    def _claim_params(self, *, backend, queues, limit, worker, lease, now, exclude=(),
                      min_priority=-100, age_rate=0.0, age_cap=0, server=""):
        horizon, age_now, age_cap = ageing_bounds(now, age_rate, age_cap)
        return {
            "backend": backend, "queues": list(queues), "any_queue": not queues,
            "exclude": list(exclude), "min_priority": min_priority, "now": now,
            "limit": limit, "worker": worker, "token": self.new_token(),
            "lease_until": now + timedelta(seconds=lease), "horizon": horizon,
            "age_now": age_now, "age_cap": age_cap, "age_rate": float(age_rate),
            "server": server,
        }

    @staticmethod
    def _plain(name, params):
        """``name`` or, with ageing off, its ``_plain`` variant (sql/postgres/picked_plain.sql)."""
        return name if params["age_rate"] > 0 else f"{name}_plain"

    def claim(self, **claim):
        params = self._claim_params(**claim)
        return self._claimed(self.fetch(self.sql(self._plain("claim", params)), params), params)

    def claim_limited(self, *, backend, queue, cluster_max, limit, worker, lease, now, server=""):
        params = self._claim_params(backend=backend, queues=[queue], limit=limit,
                                    worker=worker, lease=lease, now=now, server=server)
        params.update(queue=queue, cluster_max=cluster_max)
        conn, raw = self.connection, self._raw()
        with conn.wrap_database_errors, raw.transaction():
            self.fetch(self.sql("claim_lock"), {"key": f"offload:{backend}:{queue}"})
            rows = self.fetch(self.sql("claim_limited"), params)
        return self._claimed(rows, params)

    @staticmethod
    def _sums(observations, count, timed=True):
        """record.sql's %(tally)s and %(tallied)s: ``observations`` (offload.stats)
        summed into JSON rows of offload_series (json_populate_recordset maps them by
        name), for ``count`` outcomes; ``timed=False``: counted, not timed."""
        if observations is None:
            return _NOT_SUMMED
        names = stat_columns()
        rows = [{"backend": backend, "minute": minute.isoformat(), "queue_name": queue,
                 "priority": priority, "task_path": task, "outcome": outcome,
                 **dict(zip(names, values, strict=True))}
                for (backend, minute, queue, priority, task, outcome), values
                in tally(observations, timed).items()]
        return {"tallied": count, "tally": json.dumps(rows, separators=(",", ":"))}

    def _outcome_params(self, outcomes, worker, observations):
        return {
            **self._sums(observations, len(outcomes)), "worker": worker,
            "ids": [o.id for o in outcomes], "tokens": [o.token for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "finished": [o.finished_at for o in outcomes],
            "available": [o.available_at for o in outcomes],
            "age_keys": [o.age_key for o in outcomes],
            "results": [o.return_value for o in outcomes],
            "errors": [o.errors for o in outcomes],
        }

    def complete(self, outcomes, *, worker=""):
        if not outcomes:
            return set()
        observations = observe(outcomes)
        params = self._outcome_params(outcomes, worker, observations)
        settles = self.settles(outcomes)
        if observations is not None and (not settles or self._fused(outcomes, params)):
            # One statement: the outcomes, their sums and the steps they release.
            accepted = {r[0] for r in self.fetch(
                self.sql("complete_steps" if settles else "complete"), params)}
            self._add_accepted(outcomes, accepted, worker)
            return accepted
        # Count the accepted rows from the rows, or settle the dependents of a failed
        # step, in the same transaction.
        with transaction.atomic(using=self.db_alias):
            accepted = {r[0] for r in self.fetch(self.sql("complete"), params)}
            if observations is None:
                self.record_rows(sorted(accepted), worker=worker, timed=True)
            if settles:
                self.record_rows(self.settle_outcomes(outcomes, accepted), worker=worker,
                                 timed=False)
        if observations is not None:
            self._add_accepted(outcomes, accepted, worker)
        return accepted

    def _write_success(self, outcome):
        return self.fetch(self.sql("succeeded"), self._succeeded(outcome))

    def add_sums(self, outcomes, *, worker=""):
        if outcomes:
            self._record(observe(outcomes), [o.id for o in outcomes], worker)

    def cycle(self, outcomes, claim=None, *, worker=""):
        observations = outcomes and claim and observe(outcomes)
        if not observations:
            return super().cycle(outcomes, claim, worker=worker)
        params = self._outcome_params(outcomes, worker, observations) | self._claim_params(**claim)
        name = "cycle"
        if self.settles(outcomes):
            if not self._fused(outcomes, params):  # complete settles, in its transaction
                return super().cycle(outcomes, claim, worker=worker)
            name = "cycle_steps"
        rows = self.fetch(self.sql(self._plain(name, params)), params)
        accepted = {r[1] for r in rows if r[0]}
        claimed = self._claimed([r[1:] for r in rows if not r[0]], params)
        self._add_accepted(outcomes, accepted, worker)
        return accepted, claimed

    def _fused(self, outcomes, params):
        """Whether the bookkeeping of the workflow steps ``outcomes`` finish can run in
        the statement that records them (``released``: complete_steps, cycle_steps):
        every outcome carries its claim and no step failed (``fail_dependents`` runs
        on its own, in complete's transaction). If so, adds its parameters."""
        if any(o.claim is None or (o.status == "FAILED" and o.claim.workflow_id is not None)
               for o in outcomes):
            return False
        at = max(o.finished_at for o in outcomes if o.finished_at is not None)
        params.update(settled_at=at, settled_epoch=at.timestamp(),
                      channel=self.channel(outcomes[0].claim.backend))
        return True

    def _add_accepted(self, outcomes, accepted, worker):
        """When a lease was lost in the batch, record.sql added nothing: add the sums of
        the accepted outcomes now, in a statement of their own (the outcomes are
        written; if this fails, or the process dies first, they go uncounted)."""
        if not accepted or len(accepted) == len(outcomes):
            return
        kept = observe([o for o in outcomes if o.id in accepted])
        try:
            self._record(kept, sorted(accepted), worker)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("%s: %d recorded outcome(s) not counted in offload_series: %s",
                           worker, len(kept), exc)

    def record_rows(self, ids, *, worker="", timed):
        if ids:
            rows = self.fetch(self.sql("record_rows"), {"ids": self.array(ids)})
            self._record([observation(*r) for r in rows], ids, worker, timed)

    def _record(self, observations, ids, worker, timed=True):
        """Add the sums of ``observations``, of the outcomes just written to ``ids``, to
        offload_series (record_sums)."""
        params = {**self._sums(observations, len(ids), timed), "worker": worker, "ids": list(ids)}
        self.fetch(self.sql("record_sums"), params)

    def unpark(self, *, backend, keys):
        if not keys:
            return 0
        [(back,)] = self.fetch(self.sql("unpark"), {"backend": backend, "keys": sorted(set(keys))})
        return back

    def next_turn(self, *, backend, now):
        [(turn,)] = self.fetch(self.sql("next_turn"), {"backend": backend, "now": now})
        return turn

    def forget_keys(self, *, backend, batch=5000):
        """Delete ``backend``'s offload_key rows whose key no task runs, in batches.
        Always safe: a row is only a lock, a claim re-creates it, and a row a claim
        holds is skipped (SKIP LOCKED), never waited for."""
        return self._delete_batches("forget_keys", {"backend": backend}, batch)

    def end_sessions(self, worker):
        """End the sessions a dead worker process left behind and wait (up to 5 s) until
        they are gone. PostgreSQL notices a vanished client only when it next writes to
        it, so a claim the process had sent still commits after its death; a rescue run
        before that would miss those tasks, and they would wait for their leases.
        Returns how many sessions were ended."""
        rows = self.execute(self.sql("end_sessions"), {"application": application_name(worker)})
        if not all(ended for (ended,) in rows):
            logger.warning("%s: a session of this dead worker did not end within 5 s; tasks it "
                           "claims now wait for their leases", worker)
        return len(rows)

    def listen_params(self, worker=None, alias=None):
        """Connection parameters for a worker's dedicated LISTEN connection (psycopg 3):
        this store's database's, or those of the DATABASES alias ``alias``; named after
        ``worker`` like its other sessions (see end_sessions)."""
        conn = connections[alias] if alias else self.connection
        params = conn.get_connection_params()
        if worker:
            params["application_name"] = application_name(worker)
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        params.pop("prepare_threshold", None)
        return params

    def wakeups(self, backend, name, listen=True):
        """How a worker learns of new work (store/wakeups.py): LISTEN/NOTIFY over this
        store's connection settings, or over those of the DATABASES alias ``listen``;
        ``listen=False``: polling only."""
        from offload.store.wakeups import Listen, Poll

        if listen is False:
            return Poll()
        return Listen(self, backend, name, alias=None if listen is True else listen)
