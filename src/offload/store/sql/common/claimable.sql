-- claimable (a fragment of every claim: filters, claim_limited): the task's queue is
-- not paused, it was not asked to stop (cancel_stopped fails it), and the release
-- fence: a worker whose server (%(server)s) was retired or declared dead claims
-- nothing, even if it is still running.
-- The registry (offload_server) is per database, not per backend: the servers of every
-- backend on this database register here, and the fence reads the claimer's row by id.
{unpaused}
      AND cancel_error IS NULL
      AND NOT EXISTS (SELECT 1 FROM offload_server s
                      WHERE s.id = %(server)s AND s.state <> 'running')
