-- fold: add offload_stat rows of minutes before %(before)s to each series' totals row
-- (minute = %(totals)s, worker = ''); fold_delete then removes them, in the same
-- transaction (SQLite's single writer keeps a second folder out meanwhile).
INSERT INTO offload_stat (backend, minute, worker, queue_name, priority, outcome, {stat_columns})
SELECT backend, %(totals)s, '', queue_name, priority, outcome, {stat_sums}
FROM offload_stat
WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(before)s
GROUP BY backend, queue_name, priority, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, outcome) DO UPDATE SET {stat_adds}
