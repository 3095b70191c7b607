-- prune: delete up to %(batch)s finished tasks older than %(before)s (called in a loop
-- so that no single statement holds locks for long).
DELETE FROM offload_task WHERE id IN (
    SELECT id FROM offload_task
    WHERE status IN ('SUCCESSFUL', 'FAILED') AND finished_at < %(before)s
    LIMIT %(batch)s
)
