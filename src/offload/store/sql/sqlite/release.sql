-- release: the steps that depend on those of %(ids)s that succeeded lose a dependency
-- per edge; a step left with none is READY from %(settled_at)s (or its run_after, if later),
-- its ageing key moved to that time (age_key = priority - rate * epoch(available_at),
-- so the rate is (priority - age_key) / epoch(available_at)). Run in the transaction
-- of the completions, so a step is released exactly once (docs/workflows.md).
-- scope: BLOCKED steps found by the edges of %(ids)s (any backend: ids are unique).
UPDATE offload_task SET
    deps_left = deps_left - d.n,
    status = CASE WHEN deps_left = d.n THEN 'READY' ELSE status END,
    available_at = CASE WHEN deps_left = d.n
        THEN max(COALESCE(run_after, %(settled_at)s), %(settled_at)s) ELSE available_at END,
    age_key = CASE WHEN deps_left = d.n AND age_key IS NOT NULL
        THEN priority - (priority - age_key)
             * max(%(settled_epoch)s, COALESCE((julianday(run_after) - 2440587.5) * 86400.0, 0.0))
             / ((julianday(available_at) - 2440587.5) * 86400.0)
        ELSE age_key END
FROM (SELECT e.child_id AS id, count(*) AS n FROM offload_edge AS e
      JOIN offload_task AS p ON p.id = e.parent_id AND p.status = 'SUCCESSFUL'
      WHERE e.parent_id IN (SELECT value FROM json_each(%(ids)s))
      GROUP BY e.child_id) AS d
WHERE offload_task.id = d.id AND offload_task.status = 'BLOCKED'
RETURNING offload_task.id, offload_task.status, offload_task.backend
