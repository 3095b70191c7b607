-- record: add tallied outcomes to offload_stat ({rows}: one group of ? placeholders per
-- series: backend, minute, worker, queue, priority, outcome, then {stat_columns}),
-- in the transaction that wrote the outcomes, so the statistics always agree with them.
-- Why tallied in Python (offload.stats.tally) rather than by aggregates as on
-- PostgreSQL: SQLite has no data-modifying CTE, so this is a second statement anyway,
-- and its VM would test every bucket for every task; the tally is one bisect per task.
-- Why keyed by the worker: no two workers ever update the same row.
INSERT INTO offload_stat (backend, minute, worker, queue_name, priority, outcome, {stat_columns})
VALUES {rows}
ON CONFLICT (backend, minute, worker, queue_name, priority, outcome) DO UPDATE SET {stat_adds}
