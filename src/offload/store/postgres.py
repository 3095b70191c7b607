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
from django.db import DatabaseError, InterfaceError, transaction

from offload.ageing import age_key, ageing_bounds
from offload.stats import stat_columns, tally
from offload.store.base import SqlStore

logger = logging.getLogger("offload.worker")
#: A prepare threshold no query reaches by repetition: only ``prepare=True`` prepares.
ONLY_EXPLICIT = 2**31 - 1
_NOT_SUMMED = {"tallied": -1, "tally": "[]"}  # record.sql adds nothing


def application_name(worker):
    """The ``application_name`` of a worker process's sessions (at most 63 bytes: the
    end of a long worker id is the part that is unique)."""
    name = f"offload:{worker}"
    return name if len(name) <= 63 else f"offload:{worker[-55:]}"


class PostgresStore(SqlStore):
    engine = "postgres"
    channel_prefix = "offload"

    def fetch(self, sql, params):
        """Run a worker statement as a server-side prepared statement.

        Django's PostgreSQL cursor binds parameters client-side, so the server parses
        and plans every statement again; the worker's few statements run thousands of
        times a second, so they go through psycopg's own cursor with ``prepare=True``
        (errors still arrive as Django's DatabaseError).

        Django opens connections with ``prepare_threshold=None`` unless the database's
        OPTIONS say otherwise, and psycopg then ignores ``prepare=True``; so on such a
        connection Offload sets a threshold no ORM query reaches, which prepares
        exactly its own statements. ``OFFLOAD_PREPARE = False`` leaves the connection
        alone (PgBouncer in transaction mode before 1.21 cannot keep prepared statements).
        """
        conn = self.connection
        with conn.wrap_database_errors, psycopg.Cursor(self._raw()) as cursor:
            cursor.execute(sql, params, prepare=True)
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
        params = {
            "backend": backend, "now": now, "channel": self.channel(backend),
            "queues": [r[0] for r in rows], "priorities": [r[1] for r in rows],
            "paths": [r[2] for r in rows], "payloads": [r[3] for r in rows],
            "run_afters": [r[4] for r in rows], "unique_keys": [r[5] for r in rows],
            "age_keys": [age_key(r[1], r[4] or now, age_rate) for r in rows],
        }
        return self.execute(self.sql("enqueue"), params)

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

    def claim(self, **claim):
        params = self._claim_params(**claim)
        return self._claimed(self.fetch(self.sql("claim"), params), params["token"], params["now"])

    def claim_limited(self, *, backend, queue, cluster_max, limit, worker, lease, now, server=""):
        params = self._claim_params(backend=backend, queues=[queue], limit=limit,
                                    worker=worker, lease=lease, now=now, server=server)
        params.update(queue=queue, cluster_max=cluster_max)
        conn, raw = self.connection, self._raw()
        with conn.wrap_database_errors, raw.transaction():
            with psycopg.Cursor(raw) as cursor:
                # Serialise this queue's claims cluster-wide (see claim_limited.sql).
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                               [f"offload:{backend}:{queue}"], prepare=True)
            rows = self.fetch(self.sql("claim_limited"), params)
        return self._claimed(rows, params["token"], now)

    @staticmethod
    def _sums(observed, count):
        """record.sql's %(tally)s and %(tallied)s: ``observed`` (see offload.stats.observe)
        summed into JSON rows of offload_stat (json_populate_recordset maps them by
        name), for ``count`` outcomes."""
        if observed is None:
            return _NOT_SUMMED
        names = stat_columns()
        rows = [{"backend": backend, "minute": minute.isoformat(), "queue_name": queue,
                 "priority": priority, "outcome": outcome, **dict(zip(names, values, strict=True))}
                for (backend, minute, queue, priority, outcome), values in tally(observed).items()]
        return {"tallied": count, "tally": json.dumps(rows, separators=(",", ":"))}

    def _outcome_params(self, outcomes, worker, observed):
        return {
            **self._sums(observed, len(outcomes)), "worker": worker,
            "ids": [o.id for o in outcomes], "tokens": [o.token for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "finished": [o.finished_at for o in outcomes],
            "available": [o.available_at for o in outcomes],
            "age_keys": [o.age_key for o in outcomes],
            "results": [o.return_value for o in outcomes],
            "errors": [o.errors for o in outcomes],
        }

    def complete(self, outcomes, *, worker="", observed=None):
        if not outcomes:
            return set()
        params = self._outcome_params(outcomes, worker, observed)
        if observed is None:  # count the accepted rows, in the same transaction
            with transaction.atomic(using=self.db_alias):
                accepted = {r[0] for r in self.fetch(self.sql("complete"), params)}
                self.record_rows(sorted(accepted), worker=worker, observe=True)
            return accepted
        accepted = {r[0] for r in self.fetch(self.sql("complete"), params)}
        self._add_accepted(outcomes, observed, accepted, worker)
        return accepted

    def cycle(self, outcomes, claim=None, *, worker="", observed=None):
        if not (outcomes and claim) or observed is None:
            return super().cycle(outcomes, claim, worker=worker, observed=observed)
        params = self._outcome_params(outcomes, worker, observed) | self._claim_params(**claim)
        rows = self.fetch(self.sql("cycle"), params)
        accepted = {r[1] for r in rows if r[0]}
        claimed = self._claimed([r[1:] for r in rows if not r[0]], params["token"], params["now"])
        self._add_accepted(outcomes, observed, accepted, worker)
        return accepted, claimed

    def _add_accepted(self, outcomes, observed, accepted, worker):
        """When a lease was lost in the batch, record.sql added nothing: add the sums of
        the accepted outcomes now, in a statement of their own (the outcomes are
        written; if this fails, or the process dies first, they go uncounted)."""
        if not accepted or len(accepted) == len(outcomes):
            return
        kept = [row for o, row in zip(outcomes, observed, strict=True) if o.id in accepted]
        params = {**self._sums(kept, len(kept)), "worker": worker, "ids": sorted(accepted)}
        try:
            self.fetch(self.sql("record_sums"), params)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("%s: %d recorded outcome(s) not counted in offload_stat: %s",
                           worker, len(kept), exc)

    def record_rows(self, ids, *, worker="", observe):
        if ids:
            params = {"worker": worker, "observe": observe, "ids": self.array(ids)}
            self.execute(self.sql("record_rows"), params, fetch=False)

    def end_sessions(self, worker):
        """End the sessions a dead worker process left behind and wait (up to 5 s) until
        they are gone. PostgreSQL notices a vanished client only when it next writes to
        it, so a claim the process had sent still commits after its death; a rescue run
        before that would miss those tasks, and they would wait for their leases.
        Returns how many sessions were ended."""
        rows = self.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()", [application_name(worker)])
        if not all(ended for (ended,) in rows):
            logger.warning("%s: a session of this dead worker did not end within 5 s; tasks it "
                           "claims now wait for their leases", worker)
        return len(rows)

    def listen_params(self):
        """Connection parameters for a dedicated LISTEN connection (psycopg 3)."""
        conn = self.connection
        params = conn.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        params.pop("prepare_threshold", None)
        return params

    def wakeups(self, backend, name):
        """How a worker learns of new work: LISTEN/NOTIFY (store/wakeups.py)."""
        from offload.store.wakeups import Listen

        return Listen(self, backend, name)
