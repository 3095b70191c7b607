-- bucket_tats: the theoretical arrival times of buckets %(keys)s (a JSON array): their
-- tokens' and their starts'.
SELECT key, tat, started FROM offload_bucket
WHERE backend = %(backend)s AND key IN (SELECT value FROM json_each(%(keys)s))
