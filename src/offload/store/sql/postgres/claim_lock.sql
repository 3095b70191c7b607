-- claim_lock (the first statement of claim_limited's transaction): serialise one
-- cluster-limited queue's claims across every server, so two claimers never both see
-- room for the last slot (see claim_limited.sql); released at commit. %(key)s is
-- "offload:<backend>:<queue>".
-- scope: one backend's queue, by its key.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))
