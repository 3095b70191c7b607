-- prune_delete: remove the tasks {ids} (still finished: one retried since prune chose
-- it stays).
DELETE FROM offload_task WHERE id IN ({ids}) AND status IN ('SUCCESSFUL', 'FAILED')
