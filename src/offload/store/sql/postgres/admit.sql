-- admit (a fragment of picked and claim_limited): of the candidates (candidate_columns,
-- best first), the tasks the claim takes: every one without a concurrency key or a
-- rate limit, and those that offload_admit (migration 0014) admits, best first: each
-- while fewer than its limit hold its concurrency key and while its rate limit's bucket
-- lets it start (a token, unless it was given a turn, rate_paced; and the bucket's
-- starts). It locks the keys' rows, then the buckets', in key order, and counts the
-- keys' running tasks in a statement of its own, so neither is ever stale; then it sets
-- aside the READY tasks of keys now full, and gives turns: to the waiting tasks of a
-- bucket it found empty, and again to turns that fell due before the bucket's starts
-- allow. With no such candidate it is not called.
picked AS (
    SELECT id FROM candidates
    WHERE concurrency_key IS NULL AND rate_key IS NULL
    UNION ALL
    SELECT offload_admit(%(backend)s, k.ids, k.keys, k.limits, k.rate_keys, k.intervals,
                         k.bursts, k.paced, %(now)s, %(age_rate)s) FROM (
        SELECT array_agg(id ORDER BY eff DESC, fair_seq, available_at, id) AS ids,
               array_agg(concurrency_key ORDER BY eff DESC, fair_seq, available_at, id) AS keys,
               array_agg(concurrency_limit ORDER BY eff DESC, fair_seq, available_at, id) AS limits,
               array_agg(rate_key ORDER BY eff DESC, fair_seq, available_at, id) AS rate_keys,
               array_agg(rate_interval ORDER BY eff DESC, fair_seq, available_at, id) AS intervals,
               array_agg(rate_burst ORDER BY eff DESC, fair_seq, available_at, id) AS bursts,
               array_agg(rate_paced ORDER BY eff DESC, fair_seq, available_at, id) AS paced
        FROM candidates
        WHERE concurrency_key IS NOT NULL OR rate_key IS NOT NULL
        HAVING count(*) > 0) AS k
)
