-- steps: tasks just enqueued (%(ids)s, with their dependency counts %(deps)s) become
-- the steps of workflow %(workflow)s; those with dependencies wait, BLOCKED. In the
-- enqueue's transaction, so no worker sees them READY.
-- scope: the ids the enqueue just returned.
UPDATE offload_task AS t SET
    workflow_id = %(workflow)s, deps_left = v.deps,
    status = CASE WHEN v.deps > 0 THEN 'BLOCKED' ELSE t.status END
FROM unnest(%(ids)s::bigint[], %(deps)s::int[]) AS v(id, deps)
WHERE t.id = v.id
