-- record: add summed outcomes to offload_stat ({rows}: one group of ? placeholders per
-- series: backend, minute, worker, queue, priority, outcome, then {stat_columns}),
-- in the transaction that wrote the outcomes, so the statistics always agree with them.
-- The sums come from the worker, made before the transaction (offload.stats.observe),
-- so the write lock is held for this one small upsert; or, for outcomes the worker did
-- not sum (cancel, rescue, a batch with a lost lease), from the rows (record_rows).
-- Why keyed by the worker: no two workers ever update the same row.
INSERT INTO offload_stat (backend, minute, worker, queue_name, priority, outcome, {stat_columns})
VALUES {rows}
ON CONFLICT (backend, minute, worker, queue_name, priority, outcome) DO UPDATE SET {stat_adds}
