-- record: add one summed series to offload_series under %(worker)s, in the transaction
-- that wrote the outcomes, so the statistics always agree with them. SqliteStore runs
-- it once per series (executemany: one minute, queue, priority, task path and outcome; usually
-- one per batch), with the values of {stat_columns} in that order.
-- The sums come from the worker, made before the transaction (offload.stats.observe),
-- so the write lock is held for this one small upsert; or, for outcomes the worker did
-- not sum (cancel, rescue, a batch with a lost lease), from the rows (record_rows).
-- Why keyed by the worker: no two workers ever update the same row.
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
VALUES (%(backend)s, %(minute)s, %(worker)s, %(queue_name)s, %(priority)s, %(task_path)s, %(outcome)s,
        {stat_params})
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
