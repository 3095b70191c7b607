-- fail_dependents: every BLOCKED step downstream of those of %(ids)s that failed
-- (after their retries, cancelled, or lost) fails too, with a DependencyFailed error
-- naming the failed step; it never runs. Run in the failure's transaction.
-- scope: BLOCKED steps found by the edges of %(ids)s (any backend: ids are unique).
WITH RECURSIVE down(id, root) AS (
    SELECT p.id, p.id FROM offload_task AS p
    WHERE p.id IN (SELECT value FROM json_each(%(ids)s)) AND p.status = 'FAILED'
    UNION
    SELECT e.child_id, down.root FROM down
    JOIN offload_edge AS e ON e.parent_id = down.id
    JOIN offload_task AS c ON c.id = e.child_id AND c.status = 'BLOCKED'
)
UPDATE offload_task SET
    status = 'FAILED', finished_at = %(now)s, deps_left = NULL,
    errors = json_array(json_object(
        'exception_class_path', 'offload.exceptions.DependencyFailed',
        'traceback', 'offload.exceptions.DependencyFailed: step ' || f.root || ' ('
                     || r.task_path || ') failed, and this step depends on it: it did not run.'
                     || char(10)))
FROM (SELECT id, min(root) AS root FROM down WHERE id <> root GROUP BY id) AS f
JOIN offload_task AS r ON r.id = f.root
WHERE offload_task.id = f.id AND offload_task.status = 'BLOCKED'
RETURNING offload_task.id
