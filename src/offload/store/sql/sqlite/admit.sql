-- admit (a fragment of claim and claim_limited, after their candidates): of the
-- candidates (candidate_columns, best first), the tasks the claim takes. Concurrency
-- keys first: every candidate without one, and of those with one as many as the key
-- has room for, best first (a task is admitted while its key's running tasks plus its
-- rank among this claim's candidates of that key stay within its concurrency_limit).
-- Then rate limits (migration 0014), per bucket, tasks with a turn (rate_paced) first,
-- then best first: with the bucket's tat t and its starts' s, the k-th may start while
-- max(s - interval / 4, now) + (k - 1) * interval - (burst - 1) * interval <= now, and,
-- without a turn, also while max(t, now) + (k - 1) * interval - (burst - 1) * interval
-- <= now; i.e. k <= burst - ceil(debt / interval). A bucket with no row is full (burst
-- tokens). The trigger offload_rate_token moves s on for each task taken, and t for
-- each taken with a token, in the same statement. The counts cannot be stale: the
-- claim is one UPDATE under SQLite's single writer.
, admitted AS (
    SELECT id, eff, fair_seq, available_at, rate_key, rate_interval, rate_burst, rate_paced
    FROM candidates WHERE concurrency_key IS NULL
    UNION ALL
    SELECT id, eff, fair_seq, available_at, rate_key, rate_interval, rate_burst, rate_paced
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY concurrency_key ORDER BY eff DESC, fair_seq, available_at, id) AS rank
        FROM candidates WHERE concurrency_key IS NOT NULL) AS a
    WHERE a.rank + (SELECT count(*) FROM offload_task AS r
                    WHERE r.status = 'RUNNING' AND r.backend = %(backend)s
                      AND r.concurrency_key = a.concurrency_key) <= a.concurrency_limit
)
SELECT id FROM admitted WHERE rate_key IS NULL
UNION ALL
SELECT id FROM (
    SELECT *, row_number() OVER (
        PARTITION BY rate_key
        ORDER BY rate_paced DESC, eff DESC, fair_seq, available_at, id) AS rank,
        (SELECT max(b.started - rate_interval / 4.0 - %(now_epoch)s, 0.0) FROM offload_bucket AS b
         WHERE b.backend = %(backend)s AND b.key = rate_key) / rate_interval - 0.001 AS debt,
        (SELECT max(b.tat - %(now_epoch)s, 0.0) FROM offload_bucket AS b
         WHERE b.backend = %(backend)s AND b.key = rate_key) / rate_interval - 0.001 AS owed
    FROM admitted WHERE rate_key IS NOT NULL) AS a
WHERE a.rank <= a.rate_burst
                - COALESCE(CAST(a.debt AS INTEGER) + (a.debt > CAST(a.debt AS INTEGER)), 0)
  AND (a.rate_paced = 1
       OR a.rank <= a.rate_burst
                    - COALESCE(CAST(a.owed AS INTEGER) + (a.owed > CAST(a.owed AS INTEGER)), 0))
