-- claim_plain: claim with ageing off (see picked_plain): take up to %(limit)s runnable
-- tasks of one backend in priority order, then in the order they became runnable.
WITH {picked_plain}, {take}
SELECT * FROM taken
