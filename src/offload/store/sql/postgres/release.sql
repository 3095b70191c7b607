-- release: the steps that depend on those of %(ids)s that succeeded lose a dependency
-- per edge (release_set); a step left with none is READY. Run in the transaction
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
    {release_set}
FROM d, locked
WHERE t.id = d.id AND t.id = locked.id AND t.status = 'BLOCKED'
RETURNING t.id, t.status, t.backend
