-- enqueue: insert a batch of tasks in one statement. %(rows)s is a JSON array with one
-- array per task: queue, priority, path, payload, available_at, run_after, unique_key,
-- age_key, concurrency_key, concurrency_limit, rate_key, rate_interval, rate_burst,
-- fair_key (json_each reads it in order, so ids follow the rows). A row whose
-- unique_key is held by a READY or RUNNING task is skipped; RETURNING lists only the
-- rows inserted. ("WHERE true" is SQLite's required disambiguation between an INSERT
-- ... SELECT and its ON CONFLICT clause.)
INSERT INTO offload_task (
    backend, queue_name, priority, task_path, payload, status, enqueued_at,
    available_at, run_after, attempts, rescues, worker_ids, errors, unique_key, age_key,
    concurrency_key, concurrency_limit, key_waiting, rate_key, rate_interval, rate_burst,
    fair_key, fair_seq)
SELECT %(backend)s, v.queue_name, v.priority, v.task_path, v.payload, 'READY', %(now)s,
       v.available_at, v.run_after, 0, 0, '', '[]', v.unique_key, v.age_key,
       v.concurrency_key, v.concurrency_limit, {key_full}, v.rate_key, v.rate_interval,
       v.rate_burst, v.fair_key, {fair_seq}
FROM (SELECT value ->> 0 AS queue_name, value ->> 1 AS priority, value ->> 2 AS task_path,
             value ->> 3 AS payload, value ->> 4 AS available_at, value ->> 5 AS run_after,
             value ->> 6 AS unique_key, value ->> 7 AS age_key, value ->> 8 AS concurrency_key,
             value ->> 9 AS concurrency_limit, value ->> 10 AS rate_key,
             value ->> 11 AS rate_interval, value ->> 12 AS rate_burst,
             value ->> 13 AS fair_key, key AS n,
             row_number() OVER (PARTITION BY value ->> 8
                                ORDER BY value ->> 1 DESC, value ->> 4, key) AS key_rank,
             row_number() OVER (PARTITION BY value ->> 13 ORDER BY key) AS fair_rank
      FROM json_each(%(rows)s)) AS v WHERE true
ORDER BY v.n
ON CONFLICT (backend, unique_key)
    WHERE status IN ('READY', 'RUNNING') AND unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key
