-- claim: take up to :limit runnable tasks of one backend in effective-priority order,
-- then in the order they became runnable. The three parts and their reason are those
-- of postgres/picked.sql: tasks not ageing or at their cap (the ready index), tasks
-- still ageing (the ageing index), tasks that just reached the cap; the last two are
-- skipped when ageing is off. INDEXED BY: SQLite's planner would otherwise take the
-- age range of the aged_out index and sort the whole backlog.
-- Why no explicit lock: a single UPDATE statement takes SQLite's write lock when it
-- starts (waiting up to the busy timeout), so the SELECT inside it sees no concurrent
-- claimer and no two processes can take the same row.
-- {filters} holds the queue, exclusion, pause and minimum-priority conditions.
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
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, priority + %(age_cap)s AS eff, available_at FROM offload_task
            WHERE status = 'READY' AND backend = %(backend)s AND {filters}
              AND age_key IS NULL AND available_at <= %(now)s
            ORDER BY priority DESC, available_at, id
            LIMIT %(limit)s)
        UNION ALL
        SELECT * FROM (
            SELECT id, age_key + %(age_now)s AS eff, available_at
            FROM offload_task INDEXED BY offload_task_ageing
            WHERE %(age_rate)s > 0 AND status = 'READY' AND backend = %(backend)s
              AND age_key IS NOT NULL AND {filters}
              AND available_at > %(horizon)s AND available_at <= %(now)s
            ORDER BY age_key DESC, id
            LIMIT %(limit)s)
        UNION ALL
        SELECT * FROM (
            SELECT id, priority + %(age_cap)s AS eff, available_at FROM offload_task
            WHERE %(age_rate)s > 0 AND status = 'READY' AND backend = %(backend)s
              AND age_key IS NOT NULL AND {filters}
              AND available_at <= %(horizon)s
            ORDER BY priority DESC, available_at, id
            LIMIT %(limit)s)
    )
    ORDER BY eff DESC, available_at, id
    LIMIT %(limit)s
)
RETURNING id, task_path, payload, priority, queue_name, enqueued_at,
          run_after, started_at, worker_ids, errors
