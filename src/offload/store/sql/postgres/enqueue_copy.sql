-- enqueue_copy: a batch without unique or concurrency keys, streamed in (PostgresStore._insert writes
-- one row per task in this column order, with the ids enqueue_ids took): the columns
-- enqueue's INSERT sets, the same values.
-- scope: the rows written carry their backend.
COPY offload_task (id, backend, queue_name, priority, task_path, payload, status, enqueued_at,
                   available_at, run_after, attempts, rescues, worker_ids, errors, age_key)
FROM STDIN
