-- claim_limited: take tasks of ONE queue that has a cluster-wide concurrency limit.
-- SQLite has one writer at a time and this is one statement, so the RUNNING count
-- and the claim cannot interleave with another server's claim.
{take}
WHERE id IN (
    SELECT id FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s AND queue_name = %(queue)s
      AND queue_name NOT IN (SELECT q.queue_name FROM offload_queue q
                             WHERE q.backend = %(backend)s AND q.paused)
      AND available_at <= %(now)s
      AND NOT EXISTS (SELECT 1 FROM offload_server s
                      WHERE s.id = %(server)s AND s.state <> 'running')
    ORDER BY priority DESC, available_at, id
    LIMIT max(0, min(%(limit)s, %(cluster_max)s - (
        SELECT count(*) FROM offload_task
        WHERE status = 'RUNNING' AND backend = %(backend)s AND queue_name = %(queue)s)))
)
{taken}
