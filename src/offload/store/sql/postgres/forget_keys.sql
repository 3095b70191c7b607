-- forget_keys: delete a batch of the claim-lock rows (offload_key, migration 0008) of
-- keys that no task runs. A row a claim holds is skipped, never waited for; a claim
-- re-creates the row of a key it needs.
DELETE FROM offload_key WHERE id IN (
    SELECT k.id FROM offload_key AS k
    WHERE k.backend = %(backend)s
      AND NOT EXISTS (SELECT 1 FROM offload_task AS t
                      WHERE t.status = 'RUNNING' AND t.backend = k.backend
                        AND t.concurrency_key = k.key)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
