-- complete: record a batch of outcomes (success, failure, or retry as READY).
-- Why the token check: only the current lease holder may write; a late write from a
-- worker that lost its lease matches nothing. %(outcomes)s is a JSON array with one
-- array per outcome: id, token, status, finished_at, available_at, age_key, result,
-- errors. RETURNING: the ids accepted (see SqliteStore.complete for offload_series).
-- scope: rows by id under their lease token, which only the claimer (of one backend) holds.
UPDATE offload_task SET
    status = v.status,
    finished_at = v.finished_at,
    available_at = COALESCE(v.available_at, offload_task.available_at),
    age_key = CASE WHEN v.available_at IS NULL THEN offload_task.age_key ELSE v.age_key END,
    return_value = v.return_value,
    errors = COALESCE(v.errors, offload_task.errors),
    lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
FROM (SELECT value ->> 0 AS id, value ->> 1 AS token, value ->> 2 AS status,
             value ->> 3 AS finished_at, value ->> 4 AS available_at, value ->> 5 AS age_key,
             value ->> 6 AS return_value, value ->> 7 AS errors
      FROM json_each(%(outcomes)s)) AS v
WHERE offload_task.id = v.id AND offload_task.lease_token = v.token
  AND offload_task.status = 'RUNNING'
RETURNING offload_task.id
