-- heartbeat: extend the leases of every task this worker still runs.
UPDATE offload_task SET lease_expires_at = %(lease_until)s
WHERE claimed_by = %(worker)s AND status = 'RUNNING'
