-- received: the return values (JSON text) of the steps task %(id)s depends on, in the
-- order they were given: what a step that receives results gets (docs/workflows.md).
-- A dependency whose row is gone (pruned) comes back with a NULL id.
-- scope: one step's dependencies, by its id.
SELECT p.id, p.return_value FROM offload_edge AS e
LEFT JOIN offload_task AS p ON p.id = e.parent_id
WHERE e.child_id = %(id)s ORDER BY e.position
