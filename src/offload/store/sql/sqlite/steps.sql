-- steps: tasks just enqueued (%(rows)s, a JSON array of [id, dependencies]) become
-- the steps of workflow %(workflow)s; those with dependencies wait, BLOCKED. In the
-- enqueue's transaction, so no worker sees them READY.
-- scope: the ids the enqueue just returned.
UPDATE offload_task SET
    workflow_id = %(workflow)s, deps_left = v.deps,
    status = CASE WHEN v.deps > 0 THEN 'BLOCKED' ELSE status END
FROM (SELECT value ->> 0 AS id, value ->> 1 AS deps FROM json_each(%(rows)s)) AS v
WHERE offload_task.id = v.id
