-- enqueue: insert a batch of tasks in one statement (one row per array element) and
-- wake idle servers. pg_notify inside the statement is delivered when the caller's
-- transaction commits, so a rolled-back enqueue wakes nobody. A row whose unique_key
-- is held by a READY or RUNNING task is skipped (ON CONFLICT on the partial unique
-- index); RETURNING lists only the rows inserted, in insertion order of their ids.
WITH ins AS (
    INSERT INTO offload_task (
        backend, queue_name, priority, task_path, payload, status, enqueued_at,
        available_at, run_after, attempts, rescues, worker_ids, errors, unique_key, age_key,
        concurrency_key, concurrency_limit, key_waiting, rate_key, rate_interval, rate_burst,
        fair_key, fair_seq)
    SELECT %(backend)s::varchar, v.queue_name, v.priority, v.task_path, v.payload, 'READY', %(now)s,
           COALESCE(v.run_after, %(now)s), v.run_after, 0, 0, '', '[]', v.unique_key, v.age_key,
           v.concurrency_key, v.concurrency_limit, {key_full}, v.rate_key, v.rate_interval,
           v.rate_burst, v.fair_key, {fair_seq}
    FROM (SELECT u.*, row_number() OVER (
                     PARTITION BY u.concurrency_key
                     ORDER BY u.priority DESC, u.run_after NULLS FIRST, u.n) AS key_rank,
                 row_number() OVER (PARTITION BY u.fair_key ORDER BY u.n) AS fair_rank
          FROM unnest(%(queues)s::text[], %(priorities)s::smallint[], %(paths)s::text[],
                      %(payloads)s::text[], %(run_afters)s::timestamptz[],
                      %(unique_keys)s::text[], %(age_keys)s::float8[],
                      %(concurrency_keys)s::text[], %(concurrency_limits)s::int[],
                      %(rate_keys)s::text[], %(rate_intervals)s::float8[],
                      %(rate_bursts)s::int[], %(fair_keys)s::text[])
               WITH ORDINALITY
               AS u(queue_name, priority, task_path, payload, run_after, unique_key, age_key,
                    concurrency_key, concurrency_limit, rate_key, rate_interval, rate_burst,
                    fair_key, n)) AS v
    ORDER BY v.n
    ON CONFLICT (backend, unique_key)
        WHERE status IN ('READY', 'RUNNING') AND unique_key IS NOT NULL DO NOTHING
    RETURNING id, unique_key
), wake AS (
    SELECT pg_notify(%(channel)s, '')
)
SELECT ins.id, ins.unique_key FROM ins, wake
