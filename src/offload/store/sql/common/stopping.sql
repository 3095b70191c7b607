-- stopping: which of the tasks a worker runs (%(ids)s) were asked to stop (stop), with
-- the error to record.
-- scope: the ids a worker holds, under its own id.
SELECT id, cancel_error FROM offload_task
WHERE {in_ids} AND status = 'RUNNING' AND claimed_by = %(worker)s AND cancel_error IS NOT NULL
