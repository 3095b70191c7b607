-- cancel_stopped: tasks asked to stop (stop) that are READY again do not run: FAILED
-- with their Cancelled error. Maintenance runs it every second; the
-- offload_task_stopping index holds only tasks asked to stop.
UPDATE offload_task SET
    status = 'FAILED', finished_at = %(now)s,
    errors = substr(errors, 1, length(errors) - 1)
             || CASE WHEN errors = '[]' THEN '' ELSE ',' END || cancel_error || ']'
WHERE backend = %(backend)s AND status = 'READY' AND cancel_error IS NOT NULL
RETURNING id
