-- succeeded: an atomic task's success, written in its own transaction, under the lease
-- guard (see Runner.atomic): one row, so no arrays to unpack; its sums are added later
-- by the worker (add_sums).
-- scope: one task by id and lease token.
UPDATE offload_task SET
    status = 'SUCCESSFUL', finished_at = %(finished)s, return_value = %(result)s,
    lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'RUNNING'
