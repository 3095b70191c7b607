-- release: the steps that depend on those of %(ids)s that succeeded lose a dependency
-- per edge; a step left with none is READY from %(now)s (or its run_after, if later),
-- its ageing key moved to that time (age_key = priority - rate * epoch(available_at),
-- so the rate is (priority - age_key) / epoch(available_at)). Run in the transaction
-- of the completions, so a step is released exactly once (docs/workflows.md): two
-- servers finishing two members of a group at once both update the callback's row,
-- the second after the first commits, from its new deps_left. The rows are locked in
-- id order first, so two transactions releasing the same steps never deadlock.
-- scope: BLOCKED steps found by the edges of %(ids)s (any backend: ids are unique).
WITH d AS (
    SELECT e.child_id AS id, count(*)::int AS n FROM offload_edge AS e
    JOIN offload_task AS p ON p.id = e.parent_id AND p.status = 'SUCCESSFUL'
    WHERE e.parent_id = ANY(%(ids)s::bigint[])
    GROUP BY e.child_id
), locked AS MATERIALIZED (
    SELECT t.id FROM offload_task AS t
    WHERE t.id IN (SELECT id FROM d) AND t.status = 'BLOCKED'
    ORDER BY t.id FOR UPDATE
)
UPDATE offload_task AS t SET
    deps_left = t.deps_left - d.n,
    status = CASE WHEN t.deps_left = d.n THEN 'READY' ELSE t.status END,
    available_at = CASE WHEN t.deps_left = d.n
        THEN greatest(t.run_after, %(now)s::timestamptz) ELSE t.available_at END,
    age_key = CASE WHEN t.deps_left = d.n AND t.age_key IS NOT NULL
        THEN t.priority - (t.priority - t.age_key)
             * greatest(extract(epoch FROM t.run_after)::float8, %(now_epoch)s::float8)
             / extract(epoch FROM t.available_at)::float8
        ELSE t.age_key END
FROM d, locked
WHERE t.id = d.id AND t.id = locked.id AND t.status = 'BLOCKED'
RETURNING t.id, t.status, t.backend
