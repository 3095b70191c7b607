-- fold_hours: add offload_series rows of minutes before %(before)s to each series' row per
-- hour (minute = the hour's start, worker = %(hours)s); fold_hours_delete then removes
-- them, in the same transaction (SQLite's single writer keeps a second folder out
-- meanwhile). Times are stored as UTC text, YYYY-MM-DD HH:MM:SS: the hour is its first
-- 13 characters.
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, substr(minute, 1, 13) || ':00:00', %(hours)s, queue_name, priority, task_path,
       outcome, {stat_sums}
FROM offload_series
WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(before)s
  AND worker <> %(hours)s
GROUP BY backend, substr(minute, 1, 13), queue_name, priority, task_path, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
