-- record_rows: what offload_stat counts of the tasks %(ids)s, whose outcome this
-- transaction just wrote (cancel, rescue); the store tallies them and runs record.
-- scope: the ids whose outcome was just written; each counts under its row's backend.
SELECT id, {observed} FROM offload_task WHERE {in_ids}
