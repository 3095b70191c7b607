-- cycle: record a batch of outcomes and claim the next batch in ONE statement, so a
-- busy worker pays one round trip and one commit per batch instead of two.
-- Why this is safe: every part of the statement sees the same snapshot, so a row that
-- `done` turns back to READY (a retry) is still RUNNING for `picked` and cannot be
-- taken again in the same statement; the two UPDATEs never touch the same row.
WITH done AS (
    UPDATE offload_task AS t SET
        status = v.status,
        finished_at = v.finished_at,
        available_at = COALESCE(v.available_at, t.available_at),
        return_value = v.return_value,
        errors = COALESCE(v.errors, t.errors),
        lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(statuses)s::text[],
                %(finished)s::timestamptz[], %(available)s::timestamptz[],
                %(results)s::text[], %(errors)s::text[])
         AS v(id, token, status, finished_at, available_at, return_value, errors)
    WHERE t.id = v.id AND t.lease_token = v.token AND t.status = 'RUNNING'
    RETURNING t.id
), picked AS (
    SELECT id FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s
      AND (%(any_queue)s OR queue_name = ANY(%(queues)s)) AND available_at <= %(now)s
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
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
              t.run_after, t.started_at, t.worker_ids, t.errors
)
SELECT true, id, NULL, NULL, NULL, NULL, NULL::timestamptz, NULL::timestamptz,
       NULL::timestamptz, NULL, NULL FROM done
UNION ALL
SELECT false, * FROM claimed
