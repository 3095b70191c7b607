-- cycle_plain: cycle with ageing off (see picked_plain). Record a batch of outcomes
-- and claim the next batch in ONE statement, so a busy worker pays one round trip and
-- one commit per batch instead of two.
-- Why this is safe: every part of the statement sees the same snapshot, so a row that
-- `done` turns back to READY (a retry) is still RUNNING for `picked` and cannot be
-- taken again in the same statement; the two UPDATEs never touch the same row.
-- `record` counts the outcomes in offload_series in the same statement.
WITH {done}, record AS ({record}), {picked_plain}, {take}
SELECT true, id, NULL, NULL, NULL, NULL, NULL::timestamptz, NULL::timestamptz,
       NULL::timestamptz, NULL, NULL, NULL::timestamptz, NULL, NULL, NULL::bigint FROM done
UNION ALL
SELECT false, * FROM taken
