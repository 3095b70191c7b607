-- enqueue: insert a batch of tasks in one statement. {rows} is expanded to one
-- "(%s, %s, %s, %s, %s, %s)" group per task: queue, priority, path, payload,
-- available_at, run_after.
INSERT INTO offload_task (
    backend, queue_name, priority, task_path, payload, status,
    enqueued_at, available_at, run_after, attempts, rescues, worker_ids, errors)
SELECT %s, column1, column2, column3, column4, 'READY', %s, column5, column6, 0, 0, '', '[]'
FROM (VALUES {rows})
RETURNING id
