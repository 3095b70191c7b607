-- claim: take up to %(limit)s runnable tasks of one backend in effective-priority
-- order (see picked), then in the order they became runnable.
WITH {picked}, {take}
SELECT * FROM taken
