-- prune_edges: the dependencies of the steps of %(ids)s that prune just removed (not
-- of one retried since prune chose it: it stays, with its dependencies).
-- scope: the ids prune just chose for its backend.
DELETE FROM offload_edge AS e WHERE e.child_id = ANY(%(ids)s::bigint[])
  AND NOT EXISTS (SELECT 1 FROM offload_task AS t WHERE t.id = e.child_id)
