-- prune_delete: remove the tasks {ids} (after carry).
DELETE FROM offload_task WHERE id IN ({ids})
