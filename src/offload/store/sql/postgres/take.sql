-- take (a fragment of claim, cycle and claim_limited): mark the picked rows as ours.
taken AS (
    UPDATE offload_task AS t SET
        status = 'RUNNING',
        attempts = t.attempts + 1,
        started_at = COALESCE(t.started_at, %(now)s),
        last_attempted_at = %(now)s,
        worker_ids = CASE WHEN t.worker_ids = '' THEN %(worker)s ELSE t.worker_ids || ',' || %(worker)s END,
        lease_token = %(token)s,
        lease_expires_at = %(lease_until)s,
        claimed_by = %(worker)s
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.id, t.task_path, t.payload, t.priority, t.queue_name, t.enqueued_at,
              t.run_after, t.started_at, t.worker_ids, t.errors, t.available_at,
              t.concurrency_key
)
