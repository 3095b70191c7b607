-- complete: record a batch of outcomes (success, failure, or retry as READY).
-- Why the token check: only the current lease holder may write; a late write from a
-- worker that lost its lease matches nothing. {rows} is one group of eight
-- placeholders per outcome: id, token, status, finished_at, available_at, age_key,
-- result, errors. RETURNING: the ids accepted (see SqliteStore.complete for offload_stat).
UPDATE offload_task SET
    status = v.column3,
    finished_at = v.column4,
    available_at = COALESCE(v.column5, offload_task.available_at),
    age_key = CASE WHEN v.column5 IS NULL THEN offload_task.age_key ELSE v.column6 END,
    return_value = v.column7,
    errors = COALESCE(v.column8, offload_task.errors),
    lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
FROM (VALUES {rows}) AS v
WHERE offload_task.id = v.column1 AND offload_task.lease_token = v.column2
  AND offload_task.status = 'RUNNING'
RETURNING offload_task.id
