-- pace: give one task its turn (its token is taken now: see SqliteStore._pace).
-- scope: one task by id, READY (its bucket was locked by the transaction).
UPDATE offload_task SET available_at = %(available_at)s, age_key = %(age_key)s, rate_paced = 1
WHERE id = %(id)s AND status = 'READY'
