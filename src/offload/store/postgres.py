"""PostgreSQL store: arrays in, one statement per batch; LISTEN/NOTIFY wakes idle servers.

Example::

    PostgresStore("default").claim(backend="default", queues=["default"], limit=8,
                                   worker="host-1-ab12", lease=30, now=now())
"""

from datetime import timedelta

from offload.store.base import Store


class PostgresStore(Store):
    engine = "postgres"
    channel_prefix = "offload"

    def channel(self, backend):
        return f"{self.channel_prefix}_{backend}"[:63]

    def enqueue(self, backend, rows, *, now):
        params = {
            "backend": backend, "now": now, "channel": self.channel(backend),
            "queues": [r[0] for r in rows], "priorities": [r[1] for r in rows],
            "paths": [r[2] for r in rows], "payloads": [r[3] for r in rows],
            "run_afters": [r[4] for r in rows],
        }
        # Identity values are handed out in row order within one statement.
        return sorted(r[0] for r in self.execute(self.sql("enqueue"), params))

    def claim(self, *, backend, queues, limit, worker, lease, now):
        token = self.new_token()
        params = {
            "backend": backend, "queues": list(queues), "now": now, "limit": limit,
            "worker": worker, "token": token, "lease_until": now + timedelta(seconds=lease),
        }
        return self._claimed(self.execute(self.sql("claim"), params), token, now)

    def complete(self, outcomes):
        if not outcomes:
            return set()
        params = {
            "ids": [o.id for o in outcomes], "tokens": [o.token for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "finished": [o.finished_at for o in outcomes],
            "available": [o.available_at for o in outcomes],
            "results": [o.return_value for o in outcomes],
            "errors": [o.errors for o in outcomes],
        }
        return {r[0] for r in self.execute(self.sql("complete"), params)}

    def listen_params(self):
        """Connection parameters for a dedicated LISTEN connection (psycopg 3)."""
        conn = self.connection
        params = conn.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        params.pop("prepare_threshold", None)
        return params
