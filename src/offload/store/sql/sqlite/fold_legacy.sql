-- fold_legacy: add offload_stat's rows, which workers of a release before migration
-- 0015 write during a rolling deploy, to offload_series (task_path '': they were
-- counted per queue only); fold_legacy_delete then removes them, in the same
-- transaction. The readers sum both tables, so their sums stay the same.
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, minute, worker, queue_name, priority, '', outcome, {stat_columns}
FROM offload_stat WHERE backend = %(backend)s
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
