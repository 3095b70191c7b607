-- record_sums: add sums (see record) of outcomes already written, %(ids)s: those
-- `cycle`/`complete` accepted when a lease was lost in their batch, or those
-- record_rows counted from their rows.
-- scope: the ids whose outcome was just written; the sums carry their backend.
WITH done AS (SELECT unnest(%(ids)s::bigint[]) AS id), record AS ({record})
SELECT 1
