-- claim_limited: take tasks of ONE queue that has a cluster-wide concurrency limit.
-- Runs in a transaction right after pg_advisory_xact_lock on the queue's key, so claims
-- of this queue are serialised across servers, and — being a new statement — sees every
-- claim committed before the lock was granted: the RUNNING count cannot be stale.
-- Concurrency keys are admitted as in every claim (admit).
WITH candidates AS (
    SELECT id, priority AS eff, {candidate_columns}
    FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s AND queue_name = %(queue)s
      AND available_at <= %(now)s
      AND {claimable}
      AND {not_waiting}
    ORDER BY priority DESC, fair_seq, available_at, id
    LIMIT GREATEST(0, LEAST(%(limit)s, %(cluster_max)s - (
        SELECT count(*) FROM offload_task
        WHERE status = 'RUNNING' AND backend = %(backend)s AND queue_name = %(queue)s)))
    FOR UPDATE SKIP LOCKED
), {admit}, {take}
SELECT * FROM taken
