-- cancel: READY tasks and BLOCKED workflow steps (%(ids)s) will not run: FAILED with a
-- Cancelled error. Running tasks are not touched (see stop).
UPDATE offload_task SET
    status = 'FAILED', finished_at = %(now)s,
    errors = {append_error}
WHERE backend = %(backend)s AND status IN ('READY', 'BLOCKED') AND {in_ids}
RETURNING id
