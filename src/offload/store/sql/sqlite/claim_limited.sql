-- claim_limited: take tasks of ONE queue that has a cluster-wide concurrency limit.
-- SQLite has one writer at a time and this is one statement, so the RUNNING count
-- and the claim cannot interleave with another server's claim.
UPDATE offload_task SET
    status = 'RUNNING',
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = CASE WHEN worker_ids = '' THEN %(worker)s ELSE worker_ids || ',' || %(worker)s END,
    lease_token = %(token)s,
    lease_expires_at = %(lease_until)s,
    claimed_by = %(worker)s
WHERE id IN (
    SELECT id FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s AND queue_name = %(queue)s
      AND queue_name NOT IN (SELECT q.queue_name FROM offload_queue q
                             WHERE q.backend = %(backend)s AND q.paused)
      AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT max(0, min(%(limit)s, %(cluster_max)s - (
        SELECT count(*) FROM offload_task
        WHERE status = 'RUNNING' AND backend = %(backend)s AND queue_name = %(queue)s)))
)
RETURNING id, task_path, payload, priority, queue_name, enqueued_at,
          run_after, started_at, worker_ids, errors
