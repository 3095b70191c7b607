-- release_set (a fragment of release and released): the SET of a step `t` that loses
-- `d.n` dependencies: READY from %(settled_at)s (or its run_after, if later) when none
-- is left, its ageing key moved to that time (age_key = priority - rate *
-- epoch(available_at), so the rate is (priority - age_key) / epoch(available_at)).
deps_left = t.deps_left - d.n,
status = CASE WHEN t.deps_left = d.n THEN 'READY' ELSE t.status END,
available_at = CASE WHEN t.deps_left = d.n
    THEN greatest(t.run_after, %(settled_at)s::timestamptz) ELSE t.available_at END,
age_key = CASE WHEN t.deps_left = d.n AND t.age_key IS NOT NULL
    THEN t.priority - (t.priority - t.age_key)
         * greatest(extract(epoch FROM t.run_after)::float8, %(settled_epoch)s::float8)
         / extract(epoch FROM t.available_at)::float8
    ELSE t.age_key END
