-- fold: move offload_series rows per hour (fold_hours) of hours before %(hours_before)s
-- into each series' totals row (minute = %(totals)s, worker = ''), so sums over the
-- table stay the same while it stays small. One statement: a second server folding at
-- the same time waits on the rows this DELETE locks, then finds them gone, so nothing
-- is counted twice.
WITH gone AS (
    DELETE FROM offload_series
    WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(hours_before)s
      AND worker = %(hours)s
    RETURNING *
)
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, %(totals)s, '', queue_name, priority, task_path, outcome, {stat_sums}
FROM gone
GROUP BY backend, queue_name, priority, task_path, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
