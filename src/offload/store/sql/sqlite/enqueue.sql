-- enqueue: insert a batch of tasks in one statement. %(rows)s is a JSON array with one
-- array per task: queue, priority, path, payload, available_at, run_after, unique_key,
-- age_key, concurrency_key, concurrency_limit (json_each reads it in order, so ids follow the rows). A row whose unique_key
-- is held by a READY or RUNNING task is skipped; RETURNING lists only the rows inserted.
-- ("WHERE true" is SQLite's required disambiguation between an INSERT ... SELECT and
-- its ON CONFLICT clause.)
INSERT INTO offload_task (
    backend, queue_name, priority, task_path, payload, status, enqueued_at,
    available_at, run_after, attempts, rescues, worker_ids, errors, unique_key, age_key,
    concurrency_key, concurrency_limit)
SELECT %(backend)s, value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'READY', %(now)s,
       value ->> 4, value ->> 5, 0, 0, '', '[]', value ->> 6, value ->> 7, value ->> 8,
       value ->> 9
FROM json_each(%(rows)s) WHERE true
ON CONFLICT (backend, unique_key)
    WHERE status IN ('READY', 'RUNNING') AND unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key
