-- cancel: READY tasks (%(ids)s) will not run: FAILED with a Cancelled error. Running tasks
-- are not touched (a task cannot be stopped from outside its thread).
UPDATE offload_task SET
    status = 'FAILED', finished_at = %(now)s,
    errors = {append_error}
WHERE backend = %(backend)s AND status = 'READY' AND {in_ids}
RETURNING id
