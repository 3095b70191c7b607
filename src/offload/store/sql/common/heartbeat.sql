-- heartbeat: extend the leases of the tasks this worker knows it runs (%(ids)s). Only
-- those: a claim whose reply was lost (connection dropped after commit) is left to
-- expire and be rescued, instead of being kept alive by a worker that never runs it.
-- scope: one worker's tasks (claimed_by and %(ids)s); a worker process claims for one
-- backend only, so its id scopes the statement (no backend filter needed).
UPDATE offload_task SET lease_expires_at = %(lease_until)s
WHERE claimed_by = %(worker)s AND status = 'RUNNING' AND {in_ids}
