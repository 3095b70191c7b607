-- waiting_keys: keys with tasks set aside (key_waiting) that have room now — what a
-- worker that died between recording its outcomes and unpark left behind; a loose
-- index scan of offload_task_key_waiting (one probe per key), at most %(batch)s keys.
WITH RECURSIVE k(key) AS (
    SELECT (SELECT concurrency_key FROM offload_task
            WHERE backend = %(backend)s AND status = 'READY' AND {is_waiting}
            ORDER BY concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT concurrency_key FROM offload_task
            WHERE backend = %(backend)s AND status = 'READY' AND {is_waiting}
              AND concurrency_key > k.key
            ORDER BY concurrency_key LIMIT 1)
    FROM k WHERE k.key IS NOT NULL
)
SELECT k.key FROM k
WHERE k.key IS NOT NULL
  AND (SELECT count(*) FROM offload_task AS r
       WHERE r.status = 'RUNNING' AND r.backend = %(backend)s AND r.concurrency_key = k.key)
      < (SELECT w.concurrency_limit FROM offload_task AS w
         WHERE w.backend = %(backend)s AND w.status = 'READY' AND w.concurrency_key = k.key
           AND w.{is_waiting}
         ORDER BY w.priority DESC, w.available_at, w.id LIMIT 1)
LIMIT %(batch)s
