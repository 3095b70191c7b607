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
        age_key = CASE WHEN v.available_at IS NULL THEN t.age_key ELSE v.age_key END,
        return_value = v.return_value,
        errors = COALESCE(v.errors, t.errors),
        lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(statuses)s::text[],
                %(finished)s::timestamptz[], %(available)s::timestamptz[],
                %(age_keys)s::float8[], %(results)s::text[], %(errors)s::text[])
         AS v(id, token, status, finished_at, available_at, age_key, return_value, errors)
    WHERE t.id = v.id AND t.lease_token = v.token AND t.status = 'RUNNING'
    RETURNING t.id
), {picked}, {take}
SELECT true, id, NULL, NULL, NULL, NULL, NULL::timestamptz, NULL::timestamptz,
       NULL::timestamptz, NULL, NULL FROM done
UNION ALL
SELECT false, * FROM taken
