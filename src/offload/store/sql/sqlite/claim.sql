-- claim: take up to :limit runnable tasks of one backend, highest priority first,
-- then in the order they became runnable.
-- Why no explicit lock: a single UPDATE statement takes SQLite's write lock when it
-- starts (waiting up to the busy timeout), so the SELECT inside it sees no concurrent
-- claimer and no two processes can take the same row. {queue_filter} is
-- "queue_name IN (...)" with one placeholder per queue, or 1 for every queue.
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
    WHERE status = 'READY' AND backend = %(backend)s
      AND {queue_filter} AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
)
RETURNING id, task_path, payload, priority, queue_name, enqueued_at,
          run_after, started_at, worker_ids, errors
