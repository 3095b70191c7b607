-- admit (a fragment of claim and claim_limited): of the candidates (id, eff,
-- available_at, concurrency_key, concurrency_limit, best first), the tasks the claim
-- takes: every one without a concurrency key, and of those with one as many as the key
-- has room for, best first — a task is admitted while its key's running tasks plus its
-- rank among this claim's candidates of that key stay within its concurrency_limit.
-- The count cannot be stale: the claim is one UPDATE under SQLite's single writer.
SELECT id FROM candidates WHERE concurrency_key IS NULL
UNION ALL
SELECT id FROM (
    SELECT id, concurrency_key, concurrency_limit, row_number() OVER (
        PARTITION BY concurrency_key ORDER BY eff DESC, available_at, id) AS rank
    FROM candidates WHERE concurrency_key IS NOT NULL) AS a
WHERE a.rank + (SELECT count(*) FROM offload_task AS r
                WHERE r.status = 'RUNNING' AND r.backend = %(backend)s
                  AND r.concurrency_key = a.concurrency_key) <= a.concurrency_limit
