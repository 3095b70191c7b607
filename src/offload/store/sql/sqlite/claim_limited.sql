-- claim_limited: take tasks of ONE queue that has a cluster-wide concurrency limit.
-- SQLite has one writer at a time and this is one statement, so the RUNNING count
-- and the claim cannot interleave with another server's claim. Concurrency keys are
-- admitted as in every claim (admit).
{take}
WHERE id IN (
    WITH candidates AS (
        SELECT id, priority AS eff, {candidate_columns}
        FROM offload_task
        WHERE status = 'READY' AND backend = %(backend)s AND queue_name = %(queue)s
          AND available_at <= %(now)s
          AND {claimable}
          AND {not_waiting}
        ORDER BY priority DESC, fair_seq, available_at, id
        LIMIT max(0, min(%(limit)s, %(cluster_max)s - (
            SELECT count(*) FROM offload_task
            WHERE status = 'RUNNING' AND backend = %(backend)s AND queue_name = %(queue)s)))
    )
    {admit}
)
{taken}
