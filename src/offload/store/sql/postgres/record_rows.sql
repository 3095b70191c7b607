-- record_rows: add the tasks {ids}, whose outcome this transaction just wrote (cancel,
-- rescue), to offload_stat (see record).
WITH done AS (SELECT * FROM offload_task WHERE id IN ({ids})), record AS ({record})
SELECT 1
