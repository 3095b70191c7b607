-- admit (a fragment of picked and claim_limited): of the candidates (candidate_columns,
-- best first), the tasks the claim takes: every one without a concurrency key or a
-- rate limit still to take (a task given its turn, rate_paced, took its token then),
-- and those that offload_admit (migration 0011) admits, best first: each while fewer
-- than its limit hold its concurrency key and while its rate limit's bucket has a
-- token. It locks the keys' rows, then the buckets', in key order, and counts the keys'
-- running tasks in a statement of its own, so neither is ever stale; then it sets aside
-- the READY tasks of keys now full, and gives the waiting tasks of a bucket it found
-- empty their turns. With no such candidate it is not called.
picked AS (
    SELECT id FROM candidates
    WHERE concurrency_key IS NULL AND (rate_key IS NULL OR rate_paced)
    UNION ALL
    SELECT offload_admit(%(backend)s, k.ids, k.keys, k.limits, k.rate_keys, k.intervals,
                         k.bursts, %(now)s, %(age_rate)s) FROM (
        SELECT array_agg(id ORDER BY eff DESC, fair_seq, available_at, id) AS ids,
               array_agg(concurrency_key ORDER BY eff DESC, fair_seq, available_at, id) AS keys,
               array_agg(concurrency_limit ORDER BY eff DESC, fair_seq, available_at, id) AS limits,
               array_agg(CASE WHEN rate_paced THEN NULL ELSE rate_key END
                         ORDER BY eff DESC, fair_seq, available_at, id) AS rate_keys,
               array_agg(rate_interval ORDER BY eff DESC, fair_seq, available_at, id) AS intervals,
               array_agg(rate_burst ORDER BY eff DESC, fair_seq, available_at, id) AS bursts
        FROM candidates
        WHERE concurrency_key IS NOT NULL OR (rate_key IS NOT NULL AND NOT rate_paced)
        HAVING count(*) > 0) AS k
)
