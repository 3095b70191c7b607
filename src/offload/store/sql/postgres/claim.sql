-- claim: take up to %(limit)s runnable tasks of one backend, highest priority first,
-- then in the order they became runnable.
-- Why FOR UPDATE SKIP LOCKED: concurrent claimers skip rows another claimer holds
-- instead of queueing behind its lock, so N servers never take the same task and
-- never wait on each other. The CTE fences the LIMIT so it applies before the UPDATE.
WITH picked AS (
    SELECT id FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s
      AND (%(any_queue)s OR queue_name = ANY(%(queues)s)) AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE offload_task AS t SET
    status = 'RUNNING',
    attempts = t.attempts + 1,
    started_at = COALESCE(t.started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = CASE WHEN t.worker_ids = '' THEN %(worker)s ELSE t.worker_ids || ',' || %(worker)s END,
    lease_token = %(token)s,
    lease_expires_at = %(lease_until)s,
    claimed_by = %(worker)s
FROM picked
WHERE t.id = picked.id
RETURNING t.id, t.task_path, t.payload, t.priority, t.queue_name, t.enqueued_at,
          t.run_after, t.started_at, t.worker_ids, t.errors
