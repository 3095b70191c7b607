-- done (a fragment of complete and cycle): record a batch of outcomes — success,
-- failure, or a retry (READY again, with its new available_at and age_key).
-- Why the token check: only the current lease holder may write. A worker that lost
-- its lease (frozen, then rescued) finds its rows re-claimed with a new token and
-- its late write matches nothing; RETURNING tells it which writes were accepted.
done AS (
    UPDATE offload_task AS t SET
        status = v.status,
        finished_at = v.finished_at,
        available_at = COALESCE(v.available_at, t.available_at),
        age_key = CASE WHEN v.available_at IS NULL THEN t.age_key ELSE v.age_key END,
        return_value = v.return_value,
        errors = COALESCE(v.errors, t.errors),
        lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(statuses)s::text[],
                %(finished)s::timestamptz[], %(available)s::timestamptz[],
                %(age_keys)s::float8[], %(results)s::text[], %(errors)s::text[])
         AS v(id, token, status, finished_at, available_at, age_key, return_value, errors)
    WHERE t.id = v.id AND t.lease_token = v.token AND t.status = 'RUNNING'
    RETURNING t.id, t.status, t.workflow_id
)
