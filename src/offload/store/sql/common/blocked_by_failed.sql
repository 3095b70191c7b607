-- blocked_by_failed: failed steps that BLOCKED steps of %(backend)s still wait for
-- (their dependents were not failed with them: see settle_blocked); maintenance
-- fails what is downstream of them (fail_dependents).
-- scope: BLOCKED steps of one backend enqueued before %(before)s, and their dependencies.
SELECT DISTINCT p.id FROM offload_task AS b
JOIN offload_edge AS e ON e.child_id = b.id
JOIN offload_task AS p ON p.id = e.parent_id
WHERE b.backend = %(backend)s AND b.status = 'BLOCKED' AND b.enqueued_at < %(before)s
  AND p.status = 'FAILED'
LIMIT %(batch)s
