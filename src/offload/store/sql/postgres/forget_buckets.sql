-- forget_buckets: delete a batch of rate limits' buckets that are full again (tat and
-- started in the past: a missing row is a full bucket). A row a claim holds is skipped.
DELETE FROM offload_bucket WHERE id IN (
    SELECT b.id FROM offload_bucket AS b
    WHERE b.backend = %(backend)s AND greatest(b.tat, b.started) < %(now_epoch)s
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
