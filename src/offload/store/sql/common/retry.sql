-- retry: run FAILED tasks (%(ids)s) again, now, keeping their errors and attempts. A
-- workflow step is retried only once every step it depends on succeeded (retry those
-- first; docs/workflows.md): it would run without their results.
UPDATE offload_task SET
    status = 'READY', available_at = %(now)s, finished_at = NULL,
    age_key = CASE WHEN %(age_rate)s > 0 THEN priority - %(age_now)s END
WHERE backend = %(backend)s AND status = 'FAILED' AND {in_ids}
  AND NOT EXISTS (SELECT 1 FROM offload_edge AS e JOIN offload_task AS p ON p.id = e.parent_id
                  WHERE e.child_id = offload_task.id AND p.status <> 'SUCCESSFUL')
RETURNING id
