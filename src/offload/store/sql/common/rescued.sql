-- rescued (a fragment of rescue and rescue_worker): take tasks back. Each rescue
-- counts; past MAX_RESCUES the task is failed with a WorkerLost error instead of being
-- tried again. Why a new status and a cleared token: the old holder's late completion
-- must no longer match.
UPDATE offload_task SET
    status = CASE WHEN rescues + 1 > %(max_rescues)s THEN 'FAILED' ELSE 'READY' END,
    finished_at = CASE WHEN rescues + 1 > %(max_rescues)s THEN %(now)s ELSE NULL END,
    errors = CASE WHEN rescues + 1 > %(max_rescues)s
        THEN {append_error}
        ELSE errors END,
    rescues = rescues + 1,
    lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
