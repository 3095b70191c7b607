-- take (a fragment of claim, cycle and claim_limited): mark the picked rows as ours,
-- found by primary key (= ANY of an array, whatever the planner guesses picked holds:
-- joined, an estimate of a thousand rows made it scan the table).
taken AS (
    UPDATE offload_task AS t SET
        status = 'RUNNING',
        attempts = t.attempts + 1,
        started_at = COALESCE(t.started_at, %(now)s),
        last_attempted_at = %(now)s,
        worker_ids = CASE WHEN t.worker_ids = '' THEN %(worker)s ELSE t.worker_ids || ',' || %(worker)s END,
        lease_token = %(token)s,
        lease_expires_at = %(lease_until)s,
        claimed_by = %(worker)s,
        rate_paced = false
    WHERE t.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING t.id, t.task_path, t.payload, t.priority, t.queue_name, t.enqueued_at,
              t.run_after, t.started_at, t.worker_ids, t.errors, t.available_at,
              t.concurrency_key, t.rate_key, t.workflow_id
)
