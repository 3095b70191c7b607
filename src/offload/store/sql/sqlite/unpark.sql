-- unpark: of key %(key)s's set-aside tasks (key_waiting), as many as it has room for
-- (by the best one's limit) go back into the claim's indexes, best first.
UPDATE offload_task SET key_waiting = 0 WHERE id IN (
    SELECT id FROM offload_task
    WHERE backend = %(backend)s AND status = 'READY' AND concurrency_key = %(key)s
      AND {is_waiting}
    ORDER BY priority DESC, available_at, id
    LIMIT max(0, (SELECT concurrency_limit FROM offload_task
                  WHERE backend = %(backend)s AND status = 'READY'
                    AND concurrency_key = %(key)s AND {is_waiting}
                  ORDER BY priority DESC, available_at, id LIMIT 1)
                 - (SELECT count(*) FROM offload_task
                    WHERE status = 'RUNNING' AND backend = %(backend)s
                      AND concurrency_key = %(key)s)))
