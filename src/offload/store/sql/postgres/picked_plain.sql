-- picked_plain (a fragment of claim_plain and cycle_plain): picked with ageing off
-- (AGE_RATE = 0, the default), where every runnable task is in "capped". Its own
-- statement, not picked with the ageing parts filtered out by a constant: PostgreSQL
-- plans Offload's claims for their parameters every time (a generic plan cannot know
-- that LIMIT is small), and parts it need not plan are planning time saved per claim.
{capped}, candidates AS (
    SELECT * FROM capped
), {admit}
