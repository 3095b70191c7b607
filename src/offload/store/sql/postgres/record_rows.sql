-- record_rows: add the tasks %(ids)s, whose outcome this transaction just wrote (cancel,
-- rescue, complete without a worker's observations), to offload_stat, counted from
-- the rows ({observed}: one row per task), one row per minute, queue, priority and
-- outcome. %(observe)s is false for outcomes no worker timed (cancel, rescue): they
-- count only.
-- Why MATERIALIZED: each task's wait and run are computed once, not once per bucket
-- column that reads them.
-- scope: the ids whose outcome was just written; each counts under its row's backend.
WITH done AS (SELECT * FROM offload_task WHERE {in_ids}), o AS MATERIALIZED (
    SELECT backend, minute, queue_name, priority,
           CASE status WHEN 'READY' THEN 'RETRIED' ELSE status END AS outcome,
           CASE WHEN %(observe)s AND status <> 'READY' THEN wait END AS wait,
           CASE WHEN %(observe)s AND status <> 'READY' THEN run END AS run
    FROM ({observed}) AS t
)
INSERT INTO offload_stat (backend, minute, worker, queue_name, priority, outcome, {stat_columns})
SELECT backend, minute, %(worker)s, queue_name, priority, outcome, {stat_aggregates}
FROM o
GROUP BY backend, minute, queue_name, priority, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, outcome) DO UPDATE SET {stat_adds}
