-- park: after a claim took tasks of keys %(keys)s (a JSON array), set aside the READY
-- tasks of those keys that are now full (key_waiting), so later claims do not pass over
-- them one by one. Its own statement under the single writer: the count is current.
UPDATE offload_task SET key_waiting = 1
WHERE backend = %(backend)s AND status = 'READY'
  AND concurrency_key IN (SELECT value FROM json_each(%(keys)s)) AND key_waiting = 0
  AND concurrency_limit <= (SELECT count(*) FROM offload_task AS r
                            WHERE r.status = 'RUNNING' AND r.backend = offload_task.backend
                              AND r.concurrency_key = offload_task.concurrency_key)
