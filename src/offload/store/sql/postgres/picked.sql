-- picked (a fragment of claim and cycle): which tasks to take, in three parts, each
-- an index scan that LIMIT stops early, merged by effective priority into the
-- candidates, of which admit keeps those their concurrency keys have room for.
-- Why three: with ageing a task's effective priority is
--     priority + min(AGE_CAP, AGE_RATE * seconds since available_at).
-- "ageing": a task still ageing orders by priority - AGE_RATE * epoch(available_at),
--   stored as age_key: the ageing index.
-- "capped": a task at its cap orders by (priority, available_at); maintenance sets
--   its age_key to NULL once it gets there, which moves it into the ready index.
-- "aged_out": tasks that reached the cap since the last maintenance pass (about a
--   second's worth), found by age in their own small index.
-- So the claim never sorts or scans the backlog. With ageing off every age_key is
-- NULL: "capped" is every runnable task and the other two are skipped by their
-- constant filter.
-- Why SKIP LOCKED in each half: concurrent claimers pass over each other's rows instead
-- of waiting; rows locked here but not picked are released when the statement commits.
{capped}, ageing AS (
    SELECT id, age_key + %(age_now)s AS eff, {candidate_columns}
    FROM offload_task
    WHERE %(age_rate)s > 0 AND status = 'READY' AND backend = %(backend)s
      AND age_key IS NOT NULL
      AND {filters}
      AND available_at > %(horizon)s AND available_at <= %(now)s
    ORDER BY age_key DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), aged_out AS (
    SELECT id, priority + %(age_cap)s AS eff, {candidate_columns}
    FROM offload_task
    WHERE %(age_rate)s > 0 AND status = 'READY' AND backend = %(backend)s
      AND age_key IS NOT NULL
      AND {filters}
      AND available_at <= %(horizon)s
    ORDER BY priority DESC, fair_seq, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), candidates AS (
    SELECT * FROM (SELECT * FROM capped UNION ALL SELECT * FROM ageing
                   UNION ALL SELECT * FROM aged_out) AS c
    ORDER BY eff DESC, fair_seq, available_at, id
    LIMIT %(limit)s
), {admit}
