-- bucket_tats: the theoretical arrival time of buckets %(keys)s (a JSON array).
SELECT key, tat FROM offload_bucket
WHERE backend = %(backend)s AND key IN (SELECT value FROM json_each(%(keys)s))
