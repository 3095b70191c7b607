-- settle_blocked: the net under the bookkeeping (see release): BLOCKED steps of
-- %(backend)s enqueued before %(before)s whose dependencies all succeeded (counted
-- from the rows) are READY now. It finds work only when a completion was recorded
-- without the bookkeeping: a worker of a release from before workflows, during a
-- rolling deploy. It never writes a count (one read before a concurrent release
-- committed would be too high): it only releases, when every dependency's success is
-- committed, and only from BLOCKED, so a step is never released twice.
-- scope: BLOCKED steps of one backend, at most %(batch)s, oldest first.
UPDATE offload_task SET deps_left = 0, status = 'READY', available_at = %(now)s
FROM (SELECT b.id, (SELECT count(*) FROM offload_edge AS e
                    JOIN offload_task AS p ON p.id = e.parent_id
                    WHERE e.child_id = b.id AND p.status <> 'SUCCESSFUL') AS n
      FROM offload_task AS b
      WHERE b.backend = %(backend)s AND b.status = 'BLOCKED' AND b.enqueued_at < %(before)s
      ORDER BY b.id LIMIT %(batch)s) AS c
WHERE offload_task.id = c.id AND offload_task.status = 'BLOCKED' AND c.n = 0
RETURNING offload_task.id, offload_task.status
