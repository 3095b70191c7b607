-- observed (a fragment of complete's RETURNING and of record_rows): per task, what
-- offload_stat counts: backend, queue, priority, status and the three times from
-- which the store takes the minute and the last attempt's wait and run
-- (SqliteStore._record; postgres/observed.sql does it in SQL). CAST: an expression
-- has no declared type, so the times come back as Django's stored UTC text, which
-- datetime.fromisoformat reads faster than the backend's converter.
backend, queue_name, priority, status, CAST(available_at AS TEXT),
CAST(last_attempted_at AS TEXT), CAST(finished_at AS TEXT)
