-- take (a fragment of claim and claim_limited): mark the chosen rows as ours.
UPDATE offload_task SET
    status = 'RUNNING',
    attempts = attempts + 1,
    started_at = COALESCE(started_at, %(now)s),
    last_attempted_at = %(now)s,
    worker_ids = CASE WHEN worker_ids = '' THEN %(worker)s ELSE worker_ids || ',' || %(worker)s END,
    lease_token = %(token)s,
    lease_expires_at = %(lease_until)s,
    claimed_by = %(worker)s,
    rate_paced = 0
