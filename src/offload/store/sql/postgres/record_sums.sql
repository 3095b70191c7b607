-- record_sums: add a worker's sums (see record) of outcomes already written, %(ids)s:
-- those `cycle`/`complete` accepted when a lease was lost in their batch.
-- scope: the ids whose outcome was just written; the sums carry their backend.
WITH done AS (SELECT unnest(%(ids)s::bigint[]) AS id), record AS ({record})
SELECT 1
