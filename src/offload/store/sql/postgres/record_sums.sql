-- record_sums: add a worker's sums (see record) of outcomes already written, %(ids)s:
-- those `cycle`/`complete` accepted when a lease was lost in their batch.
WITH done AS (SELECT unnest(%(ids)s::bigint[]) AS id), record AS ({record})
SELECT 1
