-- stop: ask the workers running these tasks (%(ids)s) to stop them. Each task keeps
-- the first request's error (%(error)s: the JSON entry its worker records, see
-- offload.cancellation); a task asked to stop that is READY again (rescued, handed
-- back, or a retry recorded before its worker saw the request) is failed by
-- cancel_stopped instead of running again.
UPDATE offload_task SET cancel_error = COALESCE(cancel_error, %(error)s)
WHERE backend = %(backend)s AND status = 'RUNNING' AND {in_ids}
RETURNING id
