-- admit (a fragment of picked and claim_limited): of the candidates (id, eff,
-- available_at, concurrency_key, concurrency_limit, best first), the tasks the claim
-- takes: every one without a concurrency key, and of those with one as many as the key
-- has room for, best first — a task is admitted while its key's running tasks plus its
-- rank among this claim's candidates of that key stay within its concurrency_limit.
-- offload_key_running (migration 0008) locks the keys' rows in key order and counts
-- their running tasks in a statement of its own, so the count is never stale; with no
-- keyed candidate it returns at once.
keys AS MATERIALIZED (
    SELECT * FROM offload_key_running(%(backend)s, ARRAY(
        SELECT concurrency_key FROM candidates WHERE concurrency_key IS NOT NULL))
), picked AS (
    SELECT id FROM candidates WHERE concurrency_key IS NULL
    UNION ALL
    SELECT id FROM (
        SELECT c.id, c.concurrency_limit, k.running, row_number() OVER (
            PARTITION BY c.concurrency_key ORDER BY c.eff DESC, c.available_at, c.id) AS rank
        FROM candidates AS c JOIN keys AS k ON k.concurrency_key = c.concurrency_key) AS a
    WHERE rank + running <= concurrency_limit
)
