-- taken (a fragment of claim and claim_limited): what a claim returns.
RETURNING id, task_path, payload, priority, queue_name, enqueued_at,
          run_after, started_at, worker_ids, errors, available_at, concurrency_key, rate_key,
          workflow_id
