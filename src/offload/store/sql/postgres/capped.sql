-- capped (a fragment of picked and picked_plain): runnable tasks that are not ageing
-- (ageing off, or at their cap), best first, from the ready index; see picked.
capped AS (
    SELECT id, priority + %(age_cap)s AS eff, {candidate_columns}
    FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s
      AND {filters}
      AND age_key IS NULL AND available_at <= %(now)s
    ORDER BY priority DESC, fair_seq, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
