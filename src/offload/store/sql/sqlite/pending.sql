-- pending: the READY or RUNNING tasks holding these unique keys (%(keys)s, a JSON array).
SELECT unique_key, id FROM offload_task
WHERE backend = %(backend)s AND status IN ('READY', 'RUNNING')
  AND unique_key IN (SELECT value FROM json_each(%(keys)s))
