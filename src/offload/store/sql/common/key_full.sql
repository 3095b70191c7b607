-- key_full (a fragment of enqueue): whether a task enqueued with concurrency key v's
-- concurrency_key and limit is set aside at once (key_waiting) because as many tasks as
-- its limit hold the key now. A task whose key frees between this count and its commit
-- is brought back by maintenance (waiting_keys) within a tick.
(v.concurrency_key IS NOT NULL AND v.concurrency_limit <= (
    SELECT count(*) FROM offload_task AS r
    WHERE r.status = 'RUNNING' AND r.backend = %(backend)s
      AND r.concurrency_key = v.concurrency_key))
