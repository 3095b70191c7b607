-- end_sessions: end the database sessions of a dead worker process, found by the
-- application_name it connected with (%(application)s), waiting up to 5 s for each;
-- one row per session, true if it ended.
-- scope: one worker's sessions, by their application_name.
SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
WHERE application_name = %(application)s AND pid <> pg_backend_pid()
