-- observed (a fragment of record_rows): per task, what offload_stat counts: backend,
-- queue, priority, status and the three times from which the store takes the minute
-- and the last attempt's wait and run (SqliteStore._record; postgres/observed.sql
-- does it in SQL). Used when the worker did not sum the outcomes itself (cancel,
-- rescue, a batch with a lost lease; see SqliteStore.complete). CAST: an expression
-- has no declared type, so the times come back as Django's stored UTC text, which
-- datetime.fromisoformat reads faster than the backend's converter.
backend, queue_name, priority, status, CAST(available_at AS TEXT),
CAST(last_attempted_at AS TEXT), CAST(finished_at AS TEXT)
