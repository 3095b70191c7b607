-- prune_delete: remove the tasks {ids}.
DELETE FROM offload_task WHERE id IN ({ids})
