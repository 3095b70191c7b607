-- key_full (a fragment of enqueue): whether a task v enqueued with a concurrency key is
-- set aside at once (key_waiting): when the key's running tasks, its tasks already in
-- line (READY, not set aside) and v's rank among this batch's tasks of the key (best
-- first, v.key_rank) come to more than its limit. So a key never has more tasks in the
-- claim's indexes than it has room for, and a claim never passes over a key's backlog.
-- Two enqueues at once may both count the key free: the claim still admits by the
-- count of running tasks, and sets aside what it cannot take.
(v.concurrency_key IS NOT NULL AND v.concurrency_limit < v.key_rank
    + (SELECT count(*) FROM offload_task AS r
       WHERE r.status = 'RUNNING' AND r.backend = %(backend)s
         AND r.concurrency_key = v.concurrency_key)
    + (SELECT count(*) FROM offload_task AS r
       WHERE r.status = 'READY' AND r.backend = %(backend)s
         AND r.concurrency_key = v.concurrency_key AND {not_waiting}))
