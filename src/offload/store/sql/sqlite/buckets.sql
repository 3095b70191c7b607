-- buckets: the rows of buckets %(keys)s (a JSON array), created full (tat = now) if
-- missing (in the claim's transaction: SqliteStore._pace).
INSERT INTO offload_bucket (backend, key, tat)
SELECT %(backend)s, value, %(now_epoch)s FROM json_each(%(keys)s) WHERE true
ON CONFLICT (backend, key) DO NOTHING
