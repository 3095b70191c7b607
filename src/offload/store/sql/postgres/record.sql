-- record (a fragment of complete, cycle and record_sums): add a worker's sums of the
-- outcomes `done` just wrote to its rows of offload_series (one per minute, queue,
-- priority, task path and outcome), in the statement that wrote them, so the statistics agree
-- with them. The worker summed them before the statement (offload.stats.observe,
-- PostgresStore._sums): %(tally)s is a JSON list of offload_series rows for %(tallied)s
-- outcomes, added as it is when `done` accepted every one of them. Nothing is
-- aggregated here, so the statement stays cheap to plan: when a lease was lost in the
-- batch, the store adds the sums of the accepted outcomes right after (record_sums);
-- callers that did not observe (tallied = -1) count the rows (record_rows).
-- Why keyed by %(worker)s: no two workers ever update the same row, so recording never
-- waits on another worker's row lock. (SQLite: see SqliteStore.complete.)
INSERT INTO offload_series (backend, minute, worker, queue_name, priority, task_path, outcome, {stat_columns})
SELECT backend, minute, %(worker)s, queue_name, priority, task_path, outcome, {stat_columns}
FROM json_populate_recordset(NULL::offload_series, %(tally)s::json)
WHERE (SELECT count(*) FROM done) = %(tallied)s::bigint
ON CONFLICT (backend, minute, worker, queue_name, priority, task_path, outcome) DO UPDATE SET {stat_adds}
