-- fold_legacy: move offload_stat's rows, which workers of a release before migration
-- 0015 write during a rolling deploy, into offload_series (task_path '': they were
-- counted per queue only), so the readers, which sum both tables, keep their sums.
-- One statement: a worker adding to a row meanwhile waits on its lock, then writes a
-- new one, which the next fold moves.
WITH gone AS (
    DELETE FROM offload_stat WHERE backend = %(backend)s RETURNING *
)
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, minute, worker, queue_name, priority, '', outcome, {stat_columns}
FROM gone
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
