-- prune_delete: remove the tasks %(ids)s (still finished: one retried since prune chose
-- it stays).
-- scope: the ids prune just chose for its backend.
DELETE FROM offload_task WHERE {in_ids} AND status IN ('SUCCESSFUL', 'FAILED')
