-- hold: an atomic task's transaction starts by writing its own row, under the lease
-- guard: it holds SQLite's write lock from here to its commit (no read to upgrade
-- later), and a lease already lost matches nothing, so the body does not run.
-- scope: one task by id and lease token.
UPDATE offload_task SET lease_expires_at = lease_expires_at
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'RUNNING'
