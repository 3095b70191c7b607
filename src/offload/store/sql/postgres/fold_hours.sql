-- fold_hours: move offload_series rows of minutes before %(before)s into each series' row
-- per hour (minute = the hour's start, worker = %(hours)s), so the last days stay
-- readable by the hour while the table stays small. One statement, as fold: a second
-- server folding at the same time waits on the rows this DELETE locks, then finds
-- them gone, so nothing is counted twice.
WITH gone AS (
    DELETE FROM offload_series
    WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(before)s
      AND worker <> %(hours)s
    RETURNING *
)
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, date_trunc('hour', minute), %(hours)s, queue_name, priority, task_path, outcome,
       {stat_sums}
FROM gone
GROUP BY backend, date_trunc('hour', minute), queue_name, priority, task_path, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
