-- cap_aged: tasks that waited long enough to reach AGE_CAP stop ageing: age_key NULL
-- moves them from the ageing index to the ready index (see postgres/picked.sql).
-- Each task goes through this once; batches keep the statement short.
UPDATE offload_task SET age_key = NULL
WHERE id IN (
    SELECT id FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s AND age_key IS NOT NULL
      AND available_at <= %(horizon)s
    LIMIT %(batch)s
)
