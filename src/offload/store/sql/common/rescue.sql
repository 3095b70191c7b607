-- rescue: take back the tasks whose lease expired (their worker froze or lost its
-- database, or its machine died); see rescued.
{rescued}
WHERE status = 'RUNNING' AND backend = %(backend)s AND lease_expires_at < %(now)s
RETURNING id, status
