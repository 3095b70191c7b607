-- hand_back: a stopping worker returns the tasks it did not finish. They keep their
-- place in line (available_at is unchanged) and will run again elsewhere.
UPDATE offload_task SET
    status = 'READY', lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
WHERE claimed_by = %(worker)s AND status = 'RUNNING'
RETURNING id
