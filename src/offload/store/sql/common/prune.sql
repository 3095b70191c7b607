-- prune: the next batch of finished tasks older than %(before)s (prune_delete removes
-- them after carry has added them to offload_counter, in one transaction).
SELECT id FROM offload_task
WHERE status IN ('SUCCESSFUL', 'FAILED') AND finished_at < %(before)s
LIMIT %(batch)s
