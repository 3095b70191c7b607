-- candidate_columns (a fragment of every claim's scans): what admission needs of a
-- candidate besides its id and effective priority: its order within the priority, its
-- concurrency key and its rate limit (see admit).
available_at, fair_seq, concurrency_key, concurrency_limit, rate_key, rate_interval,
rate_burst, rate_paced
