-- notify: tell the servers of %(channel)s (a backend's), when the caller's transaction
-- commits, that there is new work (%(payload)s = '': a copied batch is in, like
-- enqueue's NOTIFY) or that a running task was asked to stop ('stop').
-- scope: one backend's channel.
SELECT pg_notify(%(channel)s, %(payload)s)
