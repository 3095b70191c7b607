-- prune: the next batch of finished tasks older than %(before)s (prune_delete removes
-- them). Their outcomes were counted in offload_series when they were recorded.
SELECT id FROM offload_task
WHERE status IN ('SUCCESSFUL', 'FAILED') AND finished_at < %(before)s AND backend = %(backend)s
LIMIT %(batch)s
