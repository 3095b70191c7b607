-- capped (a fragment of picked and picked_plain): runnable tasks that are not ageing
-- (ageing off, or at their cap), best first, from the ready index; see picked.
capped AS (
    SELECT id, priority + %(age_cap)s AS eff, available_at, concurrency_key, concurrency_limit
    FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s
      AND {filters}
      AND age_key IS NULL AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
