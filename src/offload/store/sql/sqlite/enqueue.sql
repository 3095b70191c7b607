-- enqueue: insert a batch of tasks in one statement. {rows} is one group of eight
-- placeholders per task: queue, priority, path, payload, available_at, run_after,
-- unique_key, age_key. A row whose unique_key is held by a READY or RUNNING task is
-- skipped; RETURNING lists only the rows inserted. ("WHERE true" is SQLite's required
-- disambiguation between an INSERT ... SELECT and its ON CONFLICT clause.)
INSERT INTO offload_task (
    backend, queue_name, priority, task_path, payload, status, enqueued_at,
    available_at, run_after, attempts, rescues, worker_ids, errors, unique_key, age_key)
SELECT %s, column1, column2, column3, column4, 'READY', %s, column5, column6, 0, 0, '', '[]',
       column7, column8
FROM (VALUES {rows}) WHERE true
ON CONFLICT (backend, unique_key)
    WHERE status IN ('READY', 'RUNNING') AND unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key
