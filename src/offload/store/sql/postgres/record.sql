-- record (a fragment of complete, cycle and record_rows): add just recorded outcomes
-- ({observed}: one row per task) to this worker's rows of offload_stat, one per
-- minute, queue, priority and outcome. It runs in the statement that wrote the
-- outcomes, so the statistics always agree with them. (SQLite: see sqlite/record.sql.)
-- Why keyed by %(worker)s: no two workers ever update the same row, so recording never
-- waits on another worker's row lock.
-- %(observe)s is false for outcomes no worker timed (cancel, rescue): they count only.
-- Why MATERIALIZED: each task's wait and run are computed once, not once per bucket
-- column that reads them.
-- {stat_columns} etc. are the histogram bucket columns (offload.stats.STAT_BUCKETS).
WITH o AS MATERIALIZED (
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
