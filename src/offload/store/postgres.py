"""PostgreSQL store: arrays in, one statement per batch; LISTEN/NOTIFY wakes idle servers.

Example::

    PostgresStore("default").claim(backend="default", queues=["default"], limit=8,
                                   worker="host-1-ab12", lease=30, now=now())
"""

from datetime import timedelta

import psycopg

from offload.store.base import Store, age_key, ageing_bounds


class PostgresStore(Store):
    engine = "postgres"
    channel_prefix = "offload"

    def fetch(self, sql, params):
        """Run a worker statement as a server-side prepared statement.

        Django's PostgreSQL cursor binds parameters client-side, so the server parses
        and plans every statement again; the worker's few statements run thousands of
        times a second, so they go through psycopg's own cursor with ``prepare=True``
        (errors still arrive as Django's DatabaseError).
        """
        conn = self.connection
        conn.ensure_connection()
        with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if cursor.description else cursor.rowcount

    def channel(self, backend):
        return f"{self.channel_prefix}_{backend}"[:63]

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
        conn = self.connection
        conn.ensure_connection()
        with conn.wrap_database_errors, conn.connection.transaction():
            with psycopg.Cursor(conn.connection) as cursor:
                # Serialise this queue's claims cluster-wide (see claim_limited.sql).
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                               [f"offload:{backend}:{queue}"], prepare=True)
            rows = self.fetch(self.sql("claim_limited"), params)
        return self._claimed(rows, params["token"], now)

    @staticmethod
    def _outcome_params(outcomes, worker):
        return {
            "worker": worker, "observe": True,
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
        return {r[0] for r in self.fetch(self.sql("complete"), self._outcome_params(outcomes, worker))}

    def cycle(self, outcomes, claim=None, *, worker=""):
        if not (outcomes and claim):
            return super().cycle(outcomes, claim, worker=worker)
        params = self._outcome_params(outcomes, worker) | self._claim_params(**claim)
        rows = self.fetch(self.sql("cycle"), params)
        accepted = {r[1] for r in rows if r[0]}
        claimed = self._claimed([r[1:] for r in rows if not r[0]], params["token"], params["now"])
        return accepted, claimed

    def listen_params(self):
        """Connection parameters for a dedicated LISTEN connection (psycopg 3)."""
        conn = self.connection
        params = conn.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        params.pop("prepare_threshold", None)
        return params
