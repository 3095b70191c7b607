-- hand_back: a stopping worker returns the tasks it did not finish. They keep their
-- place in line (available_at is unchanged) and will run again elsewhere.
-- scope: one worker's tasks (claimed_by); a worker process claims for one backend only,
-- so its id scopes the statement (no backend filter needed).
UPDATE offload_task SET
    status = 'READY', lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
WHERE claimed_by = %(worker)s AND status = 'RUNNING'
RETURNING id
