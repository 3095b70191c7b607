-- claim: take up to %(limit)s runnable tasks of one backend in effective-priority order,
-- then in the order they became runnable. The three parts and their reason are those
-- of postgres/picked.sql: tasks not ageing or at their cap (the ready index), tasks
-- still ageing (the ageing index), tasks that just reached the cap; the last two are
-- skipped when ageing is off. INDEXED BY: SQLite's planner would otherwise take the
-- age range of the aged_out index and sort the whole backlog.
-- Why no explicit lock: a single UPDATE statement takes SQLite's write lock when it
-- starts (waiting up to the busy timeout), so the SELECT inside it sees no concurrent
-- claimer and no two processes can take the same row.
-- {filters}: the queues, exclusions, pause, release fence, minimum priority and full
-- concurrency keys; {admit}: which candidates the keys have room for.
{take}
WHERE id IN (
    WITH candidates AS (
      SELECT * FROM (
        SELECT * FROM (
            SELECT id, priority + %(age_cap)s AS eff, {candidate_columns} FROM offload_task
            WHERE status = 'READY' AND backend = %(backend)s AND {filters}
              AND age_key IS NULL AND available_at <= %(now)s
            ORDER BY priority DESC, fair_seq, available_at, id
            LIMIT %(limit)s)
        UNION ALL
        SELECT * FROM (
            SELECT id, age_key + %(age_now)s AS eff, {candidate_columns}
            FROM offload_task INDEXED BY offload_task_ageing
            WHERE %(age_rate)s > 0 AND status = 'READY' AND backend = %(backend)s
              AND age_key IS NOT NULL AND {filters}
              AND available_at > %(horizon)s AND available_at <= %(now)s
            ORDER BY age_key DESC, id
            LIMIT %(limit)s)
        UNION ALL
        SELECT * FROM (
            SELECT id, priority + %(age_cap)s AS eff, {candidate_columns} FROM offload_task
            WHERE %(age_rate)s > 0 AND status = 'READY' AND backend = %(backend)s
              AND age_key IS NOT NULL AND {filters}
              AND available_at <= %(horizon)s
            ORDER BY priority DESC, fair_seq, available_at, id
            LIMIT %(limit)s)
      )
      ORDER BY eff DESC, fair_seq, available_at, id
      LIMIT %(limit)s
    )
    {admit}
)
{taken}
