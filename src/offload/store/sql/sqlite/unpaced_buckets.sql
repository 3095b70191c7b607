-- unpaced_buckets: the rate limits' buckets with due tasks still to take a token (not
-- given a turn, not set aside for a concurrency key), from the unpaced index; after a
-- claim that did not fill its slots, the store gives them their turns (SqliteStore._pace).
SELECT DISTINCT rate_key FROM offload_task
WHERE backend = %(backend)s AND status = 'READY' AND rate_key IS NOT NULL AND rate_paced = 0
  AND key_waiting = 0 AND available_at <= %(now)s
