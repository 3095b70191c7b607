-- key_room (a fragment of every claim's scan, see filters and claim_limited): a task
-- with a concurrency key is passed over while its key is at its limit, so the scan goes
-- on to the next task and a full key's backlog never stands in front of other work.
-- Only a filter: admit decides (a count seen here may be stale on PostgreSQL).
(concurrency_key IS NULL OR concurrency_limit > (
        SELECT count(*) FROM offload_task AS r
        WHERE r.status = 'RUNNING' AND r.backend = offload_task.backend
          AND r.concurrency_key = offload_task.concurrency_key))
