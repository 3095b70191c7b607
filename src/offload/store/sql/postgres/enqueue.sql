-- enqueue: insert a batch of tasks in one statement (one row per array element) and
-- wake idle servers. pg_notify inside the statement is delivered when the caller's
-- transaction commits, so a rolled-back enqueue wakes nobody.
WITH ins AS (
    INSERT INTO offload_task (
        backend, queue_name, priority, task_path, payload, status,
        enqueued_at, available_at, run_after, attempts, rescues, worker_ids, errors)
    SELECT %(backend)s, v.queue_name, v.priority, v.task_path, v.payload, 'READY',
           %(now)s, COALESCE(v.run_after, %(now)s), v.run_after, 0, 0, '', '[]'
    FROM unnest(%(queues)s::text[], %(priorities)s::smallint[], %(paths)s::text[],
                %(payloads)s::text[], %(run_afters)s::timestamptz[])
         AS v(queue_name, priority, task_path, payload, run_after)
    RETURNING id
), wake AS (
    SELECT pg_notify(%(channel)s, '')
)
SELECT ins.id FROM ins, wake
