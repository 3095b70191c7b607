-- record_rows: what offload_series counts of the tasks %(ids)s, whose outcome this
-- transaction just wrote (cancel, rescue, an outcome without its claim): {observed},
-- from which the store makes each task's observation (offload.stats.observation),
-- sums them (offload.stats.tally) and adds the sums (record_sums, sqlite/record.sql).
-- scope: the ids whose outcome was just written; each counts under its row's backend.
SELECT {observed} FROM offload_task WHERE {in_ids}
