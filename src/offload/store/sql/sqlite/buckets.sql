-- buckets: the rows of buckets %(keys)s (a JSON array), created full (tat = now) if
-- missing; its first statement writes, so the transaction holds the write lock at once.
INSERT INTO offload_bucket (backend, key, tat)
SELECT %(backend)s, value, %(now_epoch)s FROM json_each(%(keys)s) WHERE true
ON CONFLICT (backend, key) DO NOTHING
