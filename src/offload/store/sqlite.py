"""SQLite store: one statement per batch under SQLite's single writer, WAL mode.

Cross-process wake-up is a cheap ``PRAGMA data_version`` poll (it changes whenever
another connection commits), so an idle server notices new work within milliseconds
without reading the table. Example::

    SqliteStore("default").claim(backend="default", queues=["default"], limit=8,
                                 worker="host-1-ab12", lease=30, now=now())
"""

from datetime import timedelta

from offload.store.base import Store

# SQLite allows 32,766 bound parameters per statement; stay well below.
_MAX_PARAMS = 30000


class SqliteStore(Store):
    engine = "sqlite"

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

    def enqueue(self, backend, rows, *, now):
        ids = []
        per_row = 6
        step = _MAX_PARAMS // per_row
        now_db = self.db_time(now)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            params = [backend, now_db]
            for queue, priority, path, payload, run_after in chunk:
                ra = self.db_time(run_after)
                params += (queue, priority, path, payload, ra or now_db, ra)
            sql = self.sql("enqueue").replace("{rows}", ",".join(["(%s,%s,%s,%s,%s,%s)"] * len(chunk)))
            ids += sorted(r[0] for r in self.execute(sql, params))
        return ids

    def claim(self, *, backend, queues, limit, worker, lease, now):
        token = self.new_token()
        params = {
            "backend": backend, "now": self.db_time(now), "limit": limit, "worker": worker,
            "token": token, "lease_until": self.db_time(now + timedelta(seconds=lease)),
        }
        queue_filter = f"queue_name IN ({self.in_list('q', queues, params)})" if queues else "1"
        sql = self.sql("claim").replace("{queue_filter}", queue_filter)
        return self._claimed(self.execute(sql, params), token, now)

    def complete(self, outcomes):
        accepted = set()
        step = _MAX_PARAMS // 7
        for start in range(0, len(outcomes), step):
            chunk = outcomes[start:start + step]
            params = []
            for o in chunk:
                params += (o.id, o.token, o.status, self.db_time(o.finished_at),
                           self.db_time(o.available_at), o.return_value, o.errors)
            sql = self.sql("complete").replace("{rows}", ",".join(["(%s,%s,%s,%s,%s,%s,%s)"] * len(chunk)))
            accepted.update(r[0] for r in self.execute(sql, params))
        return accepted
