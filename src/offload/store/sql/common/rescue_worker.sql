-- rescue_worker: take back the tasks of a worker process that died (%(worker)s), as
-- soon as its supervisor sees it exit; see rescued.
{rescued}
WHERE status = 'RUNNING' AND backend = %(backend)s AND claimed_by = %(worker)s
RETURNING id, status
