-- forget_buckets: delete a batch of rate limits' buckets that are full again (tat and
-- started in the past: a missing row is a full bucket).
DELETE FROM offload_bucket WHERE id IN (
    SELECT id FROM offload_bucket WHERE backend = %(backend)s AND max(tat, started) < %(now_epoch)s
    LIMIT %(batch)s)
