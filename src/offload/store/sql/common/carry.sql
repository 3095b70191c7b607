-- carry: add what the tasks {ids} count (finished by status, retries) to offload_counter,
-- so that metrics counters never go backwards when those rows are pruned.
INSERT INTO offload_counter (backend, queue_name, name, value)
SELECT backend, queue_name, name, sum(n) FROM (
    SELECT backend, queue_name, status AS name, count(*) AS n FROM offload_task
    WHERE id IN ({ids}) GROUP BY backend, queue_name, status
    UNION ALL
    SELECT backend, queue_name, 'retries' AS name,
           sum(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END) AS n
    FROM offload_task WHERE id IN ({ids}) GROUP BY backend, queue_name
) AS totals
WHERE true
GROUP BY backend, queue_name, name
HAVING sum(n) > 0
ON CONFLICT (backend, queue_name, name) DO UPDATE SET value = offload_counter.value + excluded.value
