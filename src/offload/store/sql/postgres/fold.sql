-- fold: move offload_stat rows of minutes before %(before)s into each series' totals
-- row (minute = %(totals)s, worker = ''), so sums over the table stay the same while
-- it stays small. One statement: a second server folding at the same time waits on
-- the rows this DELETE locks, then finds them gone, so nothing is counted twice.
WITH gone AS (
    DELETE FROM offload_stat WHERE backend = %(backend)s AND minute > %(totals)s AND minute < %(before)s
    RETURNING *
)
INSERT INTO offload_stat (backend, minute, worker, queue_name, priority, outcome, {stat_columns})
SELECT backend, %(totals)s, '', queue_name, priority, outcome, {stat_sums}
FROM gone
GROUP BY backend, queue_name, priority, outcome
ON CONFLICT (backend, minute, worker, queue_name, priority, outcome) DO UPDATE SET {stat_adds}
