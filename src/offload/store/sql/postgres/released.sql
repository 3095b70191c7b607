-- released (a fragment of complete_steps and cycle_steps): the bookkeeping of the
-- workflow steps `done` just finished with success, in the same statement (see
-- release.sql, which does the same on its own): the steps waiting for them lose a
-- dependency per edge, locked in id order first; those left with none are READY
-- (release_set), and `wake` NOTIFYs idle servers once if any became READY. The
-- edges are found by primary key arrays (= ANY), as take.sql finds its rows: a join
-- on `done` could be planned as a scan of offload_edge.
steps_done AS (
    SELECT e.child_id AS id, count(*)::int AS n FROM offload_edge AS e
    WHERE e.parent_id = ANY(ARRAY(SELECT id FROM done
                                  WHERE status = 'SUCCESSFUL' AND workflow_id IS NOT NULL))
    GROUP BY e.child_id
), steps_locked AS MATERIALIZED (
    SELECT t.id FROM offload_task AS t
    WHERE t.id = ANY(ARRAY(SELECT id FROM steps_done)) AND t.status = 'BLOCKED'
    ORDER BY t.id FOR UPDATE
), released AS (
    UPDATE offload_task AS t SET
        {release_set}
    FROM steps_done AS d, steps_locked AS l
    WHERE t.id = d.id AND t.id = l.id AND t.status = 'BLOCKED'
    RETURNING t.status
), wake AS (
    SELECT count(pg_notify(%(channel)s, '')) AS woken
    FROM (SELECT 1 FROM released WHERE status = 'READY' LIMIT 1) AS r
)
