-- notify: wake idle servers of %(channel)s (a backend's) once a copied batch is in;
-- delivered when the caller's transaction commits, like enqueue's.
-- scope: one backend's channel.
SELECT pg_notify(%(channel)s, '')
