-- admit (a fragment of picked and claim_limited): of the candidates (id, eff,
-- available_at, concurrency_key, concurrency_limit), the tasks the claim takes: every
-- one without a concurrency key, and those with one that offload_admit (migration 0010)
-- admits, best first: each while fewer than its limit hold its key. It locks the keys'
-- rows in key order and counts their running tasks in a statement of its own, so the
-- count is never stale; then it sets aside the READY tasks of keys now full. With no
-- keyed candidate it is not called.
picked AS (
    SELECT id FROM candidates WHERE concurrency_key IS NULL
    UNION ALL
    SELECT offload_admit(%(backend)s, k.ids, k.keys, k.limits) FROM (
        SELECT array_agg(id ORDER BY eff DESC, available_at, id) AS ids,
               array_agg(concurrency_key ORDER BY eff DESC, available_at, id) AS keys,
               array_agg(concurrency_limit ORDER BY eff DESC, available_at, id) AS limits
        FROM candidates WHERE concurrency_key IS NOT NULL HAVING count(*) > 0) AS k
)
