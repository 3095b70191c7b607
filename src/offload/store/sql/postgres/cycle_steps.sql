-- cycle_steps: cycle for a batch that finished workflow steps with success: the
-- steps waiting for them are released (released) in the same statement as the
-- outcomes and the next claim. A released step is READY only after the statement, so
-- it is claimed by the next round (or another server, woken by `wake`).
WITH {done}, record AS ({record}), {released}, {picked}, {take}
SELECT true, done.id, NULL, NULL, NULL, NULL, NULL::timestamptz, NULL::timestamptz,
       NULL::timestamptz, NULL, NULL, NULL::timestamptz, NULL, NULL, NULL::bigint
FROM done CROSS JOIN wake
UNION ALL
SELECT false, * FROM taken
