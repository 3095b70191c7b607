-- fold: add offload_series rows per hour (fold_hours) of hours before %(hours_before)s to
-- each series' totals row (minute = %(totals)s, worker = ''); fold_delete then removes
-- them, in the same transaction (SQLite's single writer keeps a second folder out
-- meanwhile).
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, %(totals)s, '', queue_name, priority, task_path, outcome, {stat_sums}
FROM offload_series
WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(hours_before)s
  AND worker = %(hours)s
GROUP BY backend, queue_name, priority, task_path, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
