-- observed (a fragment of record_rows): per task, what offload_series counts, in the
-- order of offload.stats.observation's arguments. CAST: an expression has no declared
-- type, so the times come back as Django's stored UTC text, which
-- datetime.fromisoformat reads faster than the backend's converter (SqliteStore).
backend, queue_name, priority, task_path, status, CAST(available_at AS TEXT),
CAST(last_attempted_at AS TEXT), CAST(finished_at AS TEXT)
